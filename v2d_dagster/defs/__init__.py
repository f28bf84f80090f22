"""The dg project's defs folder: one folder per dataset, each a ``defs.yaml`` Dataset component."""
