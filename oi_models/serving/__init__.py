"""SavedModel export of the Open Images classifier and detector (Model Garden serving modules)."""
