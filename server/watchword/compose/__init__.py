"""The server composed of one small builder per component, under one AsyncExitStack (`worker.compose`).

- `replica`: the catalogue, routes, master key, store (closer) and signing key ring (`prepare`, `attach`)
- `observing`: the audit log (closer), the metrics and the metrics port (closer)
- `deciding`: the JWKS client (closer), the pipeline and its caches, the outbound token client (closer)
  and signer, the change feed (closer), the token grants and the ext_authz core
- `hygiene`: the credential usage counter and its flusher (closer: the last flush), the leaked-key reports
- `grpc_server`: the gRPC server with its interceptors, services and health (closer), and its drain
- `http_servers`: the OAuth HTTP endpoints (socket and server closers); `ext_authz_http`: the E4 port
- `failures`: `StartupError`, the messages a failed start gives, and `on_close`
"""
