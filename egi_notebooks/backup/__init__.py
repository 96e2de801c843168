"""Backups of the users' home volumes with restic, and a per-user restore that never
overwrites (``egi-notebooks backup``)."""
