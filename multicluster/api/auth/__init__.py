"""Who is asking, and what they may read: the daemon's own view of the master cluster's authentication and RBAC.

- identity.py: the User a request carries, and the Reviews protocol (TokenReview and SubjectAccessReview on the
  master; the daemon implements it, so this package never imports a Kubernetes client);
- cache.py: the bounded, expiring cache every review answer goes through;
- frontproxy.py: requests the master's API server proxies to us (APIService): a client certificate from the
  master's request-header CA, then the user from the configured headers;
- tokens.py: a user's own bearer token, checked with a TokenReview;
- access.py: SubjectAccessReviews, and `read_scope`, which turns (user, verb, type, namespace, clusters) into the
  clusters and namespaces the user may read (or AccessDenied). Lists, gets and watches all call it.

The mapping from a read to the reviews it needs is written down in docs/security.md ("Kubernetes identities").
"""
