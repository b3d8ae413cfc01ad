"""Self-supervised pre-training (``layerwise pretrain``) and starting from its encoder
(``model.init_from``); see docs/decisions.md, issue 16."""
