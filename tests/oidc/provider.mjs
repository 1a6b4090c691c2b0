// A real OpenID provider for tests/test_console_oidc.py: panva's oidc-provider (an OpenID Certified
// implementation), configured here with the console as its client, a second client (whose tokens the
// console must refuse), and three people. Its own development login form (login name; the password is
// not checked) is what the browser fills in. Usage: node provider.mjs PROVIDER_ENTRY PORT CONFIG.json
// where CONFIG.json holds {"console": {client_id, client_secret, redirect_uri}, "other": {...}}.
// Prints "listening ISSUER" once it serves.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [entry, port, configFile] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(entry).href);
const clients = JSON.parse(readFileSync(configFile, 'utf8'));

// Who the provider knows, and the groups its administrators put them in (the console maps groups to roles).
const PEOPLE = {
  wang: { name: 'Wang Fang', groups: ['privacy-officers'] },
  li: { name: 'Li Wei', groups: ['linkage-operators'] },
  zhao: { name: 'Zhao Lei', groups: ['caseworkers'] },
};

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: Object.values(clients).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: [c.redirect_uri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
  })),
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  conformIdTokenClaims: false, // the groups go in the ID token, the one document the console verifies
  async findAccount(ctx, id) {
    if (!PEOPLE[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...PEOPLE[id] }; } };
  },
  // No consent screen: the site's provider trusts its own console.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId,
                                                accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile groups');
    grant.addOIDCClaims(['groups', 'name']);
    await grant.save();
    return grant;
  },
  features: { devInteractions: { enabled: true } },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`listening ${issuer}`));
