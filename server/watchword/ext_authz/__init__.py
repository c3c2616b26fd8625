"""Envoy's external authorization (E1, E4): one decision core, answered over gRPC (`api/ext_authz.py`) and
over plain HTTP (`http.py`)."""
