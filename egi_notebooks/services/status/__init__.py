"""The status service: a monitoring probe that really runs code in a user notebook.

The probe user is a member of the hub group :data:`PROBE_GROUP`; the service creates the group
and adds the user to it on every run. Accounting (and anything else that counts real users)
must leave the members of this group out.
"""

#: Hub group whose members are monitoring probe users, not real users (accounting skips them).
PROBE_GROUP = "egi-notebooks-probe"

#: Default name of the probe user (the ``probe_user`` trait of the status service).
DEFAULT_PROBE_USER = "egi-notebooks-probe"
