"""Outbound: what webhooks carry to prove themselves to customers' endpoints (O1-O6).

- `signer`: SignOutbound, the headers of one delivery (O1 Bearer, O2 Basic, O3/O4 access token, O5).
- `credential`: the schemes and the one validator shared by the admin API, the signer and the fetcher.
- `secrets`: the sealed secrets (O6); `header_values`: what may become a header; `standard_webhooks`: O5.
- O3/O4, after Authlib's rfc6749/rfc7523 layout: `token_endpoint` (what is fetched with), `client_auth`
  (RFC 6749 §2.3.1, RFC 7523), `token_response` (RFC 6749 §5.1/§5.2), `pinned_transport` and
  `network_guard` (the outbound HTTP and its SSRF guard), `token_cache` (the single-flight cache).
"""
