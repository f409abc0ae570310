"""Offline analyses over saved checkpoints (``cl-analyze``) and the training-time probes
(docs/design.md, principle 8): linear mode connectivity, curvature and gradient conflict."""
