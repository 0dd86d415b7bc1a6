"""Monitors' statistics as mergeable pieces (issue #19): specs any engine computes, merged across
parts of the records, and the exact statistics computed from them. Pure: no SQL, no engine."""
