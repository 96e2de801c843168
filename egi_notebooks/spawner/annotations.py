"""Names of the pod/claim metadata that other components read (the accounting contract).

Accounting (``egi_notebooks.services.accounting``) attributes each notebook session to a
VO, a flavour and an image from these annotations on the pod (and in the spawner state);
import the constants rather than spelling the strings, so the spawner and accounting cannot
drift apart.
"""

#: The user's primary VO (``auth_state["primary_vo"]``); absent when the user has none.
PRIMARY_VO = "egi.eu/primary-vo"
#: The slug of the profile (``profile_list`` entry) the server was started with.
FLAVOR = "egi.eu/flavor"
#: The image of the pod's notebook container (the profile's, after kubespawner's overrides):
#: accounting's ImageId. Never the image a user named in the spawn request's options.
IMAGE = "egi.eu/image"
#: The unescaped hub username (kubespawner sets it too; the older hub spawner relied on it).
USERNAME = "hub.jupyter.org/username"
#: The named server, absent for the default server (set by kubespawner).
SERVERNAME = "hub.jupyter.org/servername"
#: Label on claims and Secrets holding :func:`egi_notebooks.spawner.names.user_slug`, so a
#: user's objects are found with a label selector instead of a namespace-wide scan.
USER_SLUG_LABEL = "egi.eu/user"
#: Annotation on home claims EGISpawner creates: the provider identity (``egi_notebooks.identity``)
#: of the account the claim was made for; a claim recording another identity is never adopted.
OWNER_IDENTITY = "egi.eu/owner"

__all__ = ["FLAVOR", "IMAGE", "PRIMARY_VO", "SERVERNAME", "USERNAME", "USER_SLUG_LABEL"]
