"""Offline analyses over saved checkpoints (``cl-analyze``) and the training-time probes
(DESIGN.md, principle 8): linear mode connectivity, curvature and gradient conflict."""
