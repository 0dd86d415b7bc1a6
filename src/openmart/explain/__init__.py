"""Per-transaction explanations through the binding (SHAP, LIME, contrastive)."""
