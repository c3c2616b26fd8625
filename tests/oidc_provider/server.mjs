// A real OAuth 2.0 authorization server for Watchword's O3/O4 tests: npm's `oidc-provider` (pinned in
// package.json), with the client_credentials grant and the clients a test registers.
//
//   node tests/oidc_provider/server.mjs CONFIG.json
//
// CONFIG.json (written by tests/support/oidc_provider.py):
//   {"port": 0, "clients": [<RFC 7591 client metadata>, ...], "scopes": ["..."],
//    "resource_servers": {"<resource indicator>": {"scope": "a b"}}}
// A client credentials request without `resource` gets an opaque access token; one with a `resource`
// listed in resource_servers (RFC 8707) gets a JWT access token (RFC 9068) for that audience.
// `port` 0 picks a free port. Once listening, one line goes to stdout:
//   oidc-provider listening on http://127.0.0.1:<port>
// and the issuer is that URL. The process ends on SIGTERM/SIGINT or when its stdin closes (the test
// process went away). Every token endpoint failure is logged with oidc-provider's own detail, which the
// HTTP answer leaves out.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const resourceServers = config.resource_servers ?? {};

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, HOST, resolve);
});
const issuer = `http://${HOST}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  scopes: config.scopes ?? [],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt'],
  features: {
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect: the tests ask whether a token is one this server issued.
    introspection: { enabled: true, allowedPolicy: async () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, indicator) => {
        if (!Object.hasOwn(resourceServers, indicator)) {
          throw new errors.InvalidTarget();
        }
        const { scope = '' } = resourceServers[indicator];
        return { scope, audience: indicator, accessTokenFormat: 'jwt', accessTokenTTL: 600 };
      },
    },
    devInteractions: { enabled: false },
  },
  // Client credentials tokens live 10 minutes (oidc-provider's default, made explicit).
  ttl: { ClientCredentials: 600 },
});

for (const event of ['grant.error', 'introspection.error', 'server_error']) {
  provider.on(event, (ctx, err) => {
    const detail = err.error_detail ? ` (${err.error_detail})` : '';
    const cause = err.cause ? ` cause: ${err.cause.message ?? err.cause}` : '';
    console.log(`${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}${detail}${cause}`);
  });
}
provider.on('grant.success', (ctx) => {
  console.log(`grant.success: client ${ctx.oidc.client?.clientId} (${ctx.oidc.client?.clientAuthMethod})`);
});

server.on('request', provider.callback());

const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();

console.log(`oidc-provider listening on ${issuer}`);
