"""Monitoring: drift tests of live inputs and predictions against the training reference
(``reference.json``), rolling scores for the server, and the report of ``layerwise
monitor``."""
