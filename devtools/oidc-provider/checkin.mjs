// A local EGI Check-in for the demo and the tests: the certified `oidc-provider` configured as
// Check-in behaves (Keycloak layout under /auth/realms/egi, code flow with PKCE S256, rotating
// refresh tokens for offline_access, revocation, introspection, RP-initiated logout, opaque
// access tokens, scope claims only in userinfo). Settings `jwt_access_tokens` (JWTs for a
// resource indicator) and `token_exchange` (RFC 8693) turn on what Check-in also offers.
//
//   node checkin.mjs --config provider.json [--port 0]
//
// The configuration is the JSON document tests/harness/provider.py writes (admin_token,
// clients, users {login: {password, claims}}, lifetimes). It listens on 127.0.0.1 and prints
// "provider ready at <issuer>" once it does. /_admin/ (Bearer admin_token) changes users,
// client secrets and lifetimes while it runs, and counts calls per endpoint.

import { AsyncLocalStorage } from 'node:async_hooks';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

const READY_LINE = 'provider ready at ';
const HOST = '127.0.0.1';

// Keycloak's paths under the realm: Check-in runs Keycloak, clients may hard-code them
const ROUTES = {
  authorization: '/protocol/openid-connect/auth',
  token: '/protocol/openid-connect/token',
  userinfo: '/protocol/openid-connect/userinfo',
  jwks: '/protocol/openid-connect/certs',
  revocation: '/protocol/openid-connect/revoke',
  introspection: '/protocol/openid-connect/token/introspect',
  end_session: '/protocol/openid-connect/logout',
  device_authorization: '/protocol/openid-connect/auth/device',
  code_verification: '/device',
  pushed_authorization_request: '/protocol/openid-connect/ext/par/request',
  backchannel_authentication: '/protocol/openid-connect/ext/ciba/auth',
  registration: '/clients-registrations/openid-connect',
  challenge: '/protocol/openid-connect/challenge',
  credential: '/protocol/openid-connect/credential',
};
// endpoint names as the stats report them (the same names as the Python provider's)
const COUNTED = new Set([
  'discovery', 'jwks', 'authorization', 'token', 'userinfo', 'revocation', 'introspection',
  'end_session',
]);
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REFRESH_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:refresh_token';
const GRANT_TYPES = new Set(['authorization_code', 'refresh_token', TOKEN_EXCHANGE]);

// scope -> claims, as registered at Check-in; with conformIdTokenClaims they reach only
// userinfo (and never the id_token of the code flow)
const SCOPE_CLAIMS = {
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'nickname'],
  email: ['email', 'email_verified'],
  eduperson_entitlement: ['eduperson_entitlement'],
  entitlements: ['entitlements'],
  voperson_id: ['voperson_id'],
};
const CLIENT_SCOPE = 'openid profile email offline_access eduperson_entitlement entitlements voperson_id';

const SETTING_DEFAULTS = {
  access_token_lifetime: 3600,
  refresh_token_lifetime: 86400,
  id_token_lifetime: 3600,
  code_lifetime: 60,
  // accepted for compatibility with the other provider's configuration: here every scope
  // claim is userinfo-only
  userinfo_only_claims: [],
  // true: an access token requested for a resource indicator (`resource=<URL>` in the
  // authorization and token requests) is an RS256 JWT (typ at+jwt, aud = the client, the
  // user's scope claims inside); without one it stays opaque (userinfo takes only those).
  // Read at start-up.
  jwt_access_tokens: false,
  // true: the token endpoint offers RFC 8693 token exchange of an access token for the
  // client's own access and refresh tokens, as Check-in does. Read at start-up.
  token_exchange: false,
};
// settings that shape the provider object: fixed once it runs
const STARTUP_SETTINGS = new Set(['jwt_access_tokens', 'token_exchange']);

class ConfigError extends Error {}

function stableSub(login) {
  return crypto.createHash('sha256').update(`egi-notebooks-demo:${login}`).digest('hex');
}

function checkSetting(name, value) {
  if (!(name in SETTING_DEFAULTS)) {
    throw new ConfigError(`unknown setting ${JSON.stringify(name)}`);
  }
  if (name === 'userinfo_only_claims') {
    if (!Array.isArray(value)) throw new ConfigError(`${name} must be a list of claim names`);
    return value;
  }
  if (STARTUP_SETTINGS.has(name)) {
    if (typeof value !== 'boolean') throw new ConfigError(`${name} must be true or false`);
    return value;
  }
  if (typeof value !== 'number' || !(value > 0)) {
    throw new ConfigError(`${name} must be a positive number of seconds`);
  }
  return value;
}

function makeUser(login, spec, where) {
  if (typeof login !== 'string' || !login || login.includes('/')) {
    throw new ConfigError(`${where}: login must be a non-empty string without '/'`);
  }
  if (typeof spec?.password !== 'string' || !spec.password) {
    throw new ConfigError(`${where}: password must be a non-empty string`);
  }
  const claims = spec.claims ?? {};
  if (typeof claims !== 'object' || Array.isArray(claims)) {
    throw new ConfigError(`${where}: claims must be a JSON object`);
  }
  return { password: spec.password, claims: { sub: stableSub(login), ...claims } };
}

function loadConfig(path) {
  const raw = JSON.parse(fs.readFileSync(path, 'utf8'));
  const known = new Set(['realm_path', 'admin_token', 'clients', 'users', ...Object.keys(SETTING_DEFAULTS)]);
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length) throw new ConfigError(`unknown keys ${unknown.join(', ')}`);
  const settings = { ...SETTING_DEFAULTS };
  for (const name of Object.keys(SETTING_DEFAULTS)) {
    if (name in raw) settings[name] = checkSetting(name, raw[name]);
  }
  const clients = new Map();
  for (const [i, c] of (raw.clients ?? []).entries()) {
    if (!c.client_id || !c.client_secret || !c.redirect_uris?.length) {
      throw new ConfigError(`clients[${i}] needs client_id, client_secret and redirect_uris`);
    }
    clients.set(c.client_id, { ...c });
  }
  if (!clients.size) throw new ConfigError('clients must be a non-empty list');
  const users = new Map();
  for (const [login, spec] of Object.entries(raw.users ?? {})) {
    users.set(login, makeUser(login, spec, `users.${login}`));
  }
  const realmPath = (raw.realm_path ?? '/auth/realms/egi').replace(/\/+$/, '');
  if (!realmPath.startsWith('/') || realmPath.startsWith('/_admin')) {
    throw new ConfigError('realm_path must be a path starting with / and not under /_admin');
  }
  return { realmPath, adminToken: raw.admin_token, clients, users, settings };
}

const args = parseArgs({ options: { config: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!args.values.config) {
  console.error('usage: node checkin.mjs --config provider.json [--port 0]');
  process.exit(2);
}
let config;
try {
  config = loadConfig(args.values.config);
} catch (e) {
  console.error(`provider: invalid configuration ${args.values.config}: ${e.message}`);
  process.exit(2);
}

// ---- storage: one in-memory map; entries vanish at the exact second they expire ----------
const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const now = () => Date.now() / 1000;
// Keycloak (Check-in) revokes a revoked access token alone; oidc-provider would also revoke
// every token of its grant (the refresh token too). A revocation request runs in this context,
// which records the kind of the token it found.
const revocation = new AsyncLocalStorage();

function live(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= now()) {
    store.delete(key);
    return undefined;
  }
  return entry;
}

class Adapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), { payload, expiresAt: expiresIn ? now() + expiresIn : undefined });
    if (payload.uid) store.set(`${this.model}:uid:${payload.uid}`, { payload: id });
    if (payload.userCode) store.set(`${this.model}:userCode:${payload.userCode}`, { payload: id });
  }

  async find(id) {
    if (this.model === 'Client') {
      // the client registry is the configuration, so that rotating a secret takes effect
      const c = config.clients.get(id);
      if (!c) return undefined;
      return {
        client_id: c.client_id,
        client_secret: c.client_secret,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
        grant_types: ['authorization_code', 'refresh_token', ...(config.settings.token_exchange ? [TOKEN_EXCHANGE] : [])],
        response_types: ['code'],
        token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
        scope: CLIENT_SCOPE,
      };
    }
    const payload = live(this.key(id))?.payload;
    const revoking = revocation.getStore();
    if (revoking && payload) revoking.found = this.model;
    return payload;
  }

  async findByUid(uid) {
    const id = live(`${this.model}:uid:${uid}`)?.payload;
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(code) {
    const id = live(`${this.model}:userCode:${code}`)?.payload;
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = live(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(now());
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    if (revocation.getStore()?.found === 'AccessToken') return; // as Keycloak: that token only
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload?.grantId === grantId) store.delete(key);
    }
  }
}

function liveTokenCounts(login) {
  const sub = config.users.get(login)?.claims.sub;
  const counts = { access: 0, refresh: 0 };
  for (const key of [...store.keys()]) {
    const entry = live(key);
    if (!entry || entry.payload?.accountId !== sub || entry.payload.consumed) continue;
    if (key.startsWith('AccessToken:')) counts.access += 1;
    if (key.startsWith('RefreshToken:')) counts.refresh += 1;
  }
  return counts;
}

// ---- accounts: the users of the configuration, changed through /_admin/ -------------------
function loginOfSub(sub) {
  for (const [login, user] of config.users) if (user.claims.sub === sub) return login;
  return undefined;
}

async function findAccount(ctx, sub) {
  const login = loginOfSub(sub);
  if (login === undefined) return undefined;
  return {
    accountId: sub,
    // the user's current claims at each call: a changed entitlement shows at the next refresh
    claims: async () => ({ ...config.users.get(login).claims, sub }),
  };
}

// ---- statistics --------------------------------------------------------------------------
let stats;
function resetStats() {
  stats = { endpoints: {}, grants: {}, refreshByUser: {}, invalidGrant: 0 };
}
resetStats();

function statsJson() {
  const out = {};
  for (const name of COUNTED) if (name !== 'token') out[name] = stats.endpoints[name] ?? 0;
  out.token = { authorization_code: 0, refresh_token: 0, ...stats.grants };
  out.token_calls = stats.endpoints.token ?? 0;
  out.refresh_by_user = { ...stats.refreshByUser };
  out.invalid_grant = stats.invalidGrant;
  out.faulted = 0;
  return out;
}

function countCall(ctx) {
  const route = ctx.oidc?.route;
  if (!COUNTED.has(route)) return;
  stats.endpoints[route] = (stats.endpoints[route] ?? 0) + 1;
  if (route !== 'token') return;
  const grantType = ctx.oidc.params?.grant_type;
  const kind = GRANT_TYPES.has(grantType) ? grantType : 'other';
  stats.grants[kind] = (stats.grants[kind] ?? 0) + 1;
  if (grantType === 'refresh_token') {
    const value = ctx.oidc.params.refresh_token;
    const sub = ctx.oidc.entities?.RefreshToken?.accountId
      ?? store.get(`RefreshToken:${value}`)?.payload?.accountId;
    const login = sub && loginOfSub(sub);
    if (login) stats.refreshByUser[login] = (stats.refreshByUser[login] ?? 0) + 1;
  }
  if (ctx.body?.error === 'invalid_grant') stats.invalidGrant += 1;
}

// ---- pages -------------------------------------------------------------------------------
function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}
h1{font-size:1.4em}label{display:block;margin:.6em 0}input[type=text],input[type=password]{width:100%}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.2em .8em .2em 0;text-align:left}caption{text-align:left;font-weight:600}.error{color:#a00}</style>
</head><body>${body}</body></html>`;
}

const DEMO_ACCOUNTS = {
  alice: 'member of vo.notebooks.egi.eu and vo.access.egi.eu',
  bob: 'member of vo.access.egi.eu',
  admin: 'manager of vo.notebooks.egi.eu: a hub admin',
  mallory: 'member of vo.other.eu only: the hub refuses her (403)',
};

function loginPage(action, clientId, error) {
  const rows = [...config.users.keys()]
    .map((login) => `<tr><td><code>${esc(login)}</code></td><td>${esc(DEMO_ACCOUNTS[login] ?? '')}</td></tr>`)
    .join('');
  return page('EGI Check-in (demo)', `<main><h1>EGI Check-in (demo)</h1>
<p>A local stand-in for EGI Check-in: no real account works here.
Sign in to <code>${esc(clientId)}</code> with one of the demo accounts (password = login name):</p>
<table><caption>Demo accounts</caption><thead><tr><th scope="col">Login</th><th scope="col">Who</th></tr></thead>
<tbody>${rows}</tbody></table>
${error ? `<p class="error" id="input-error">${esc(error)}</p>` : ''}
<form id="kc-form-login" method="post" action="${esc(action)}">
<input type="hidden" name="form" value="login">
<label for="username">Login</label>
<input type="text" id="username" name="username" autofocus autocomplete="username">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" name="login" value="1">Sign in</button>
</form></main>`);
}

async function logoutSource(ctx, form) {
  // the hidden xsrf field of `form` is what the confirmation needs
  const hidden = [...form.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)"\/?>/g)]
    .map(([, name, value]) => `<input type="hidden" name="${name}" value="${value}">`).join('');
  const action = form.match(/action="([^"]*)"/)[1];
  ctx.body = page('EGI Check-in (demo): sign out', `<h1>EGI Check-in (demo)</h1>
<p>Sign out of EGI Check-in?</p>
<form method="post" action="${action}">${hidden}
<button type="submit" name="logout" value="yes" autofocus>Sign out</button>
<button type="submit">Stay signed in</button>
</form>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('EGI Check-in (demo): signed out', '<h1>EGI Check-in (demo)</h1><p>You are signed out.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('EGI Check-in (demo): error', `<h1>EGI Check-in (demo)</h1>
<p class="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
}

// ---- the provider ------------------------------------------------------------------------
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

function loginEveryTime() {
  // as the tests expect of a login: every authorization request shows the login form
  // (no single sign-on between two logins in the same browser)
  const policy = interactionPolicy.base();
  policy.get('login').checks.add(new interactionPolicy.Check(
    'login_every_time',
    'every authorization asks for the login form',
    (ctx) => (ctx.oidc.result?.login ? interactionPolicy.Check.NO_NEED_TO_PROMPT
      : interactionPolicy.Check.REQUEST_PROMPT),
  ));
  return policy;
}

// ---- access token formats and token exchange (both behind settings) ----------------------
function jwtAccessTokens() {
  // a resource indicator gets a JWT; the hub's own login asks for none and stays opaque
  return {
    enabled: true,
    defaultResource: async (ctx, client, oneOf) => oneOf,
    useGrantedResource: async () => false,
    getResourceServerInfo: async (ctx, resource, client) => ({
      scope: CLIENT_SCOPE,
      audience: client.clientId,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    }),
  };
}

async function grantWithResource(ctx) {
  // the login page grants the OIDC scopes; a resource indicator's scopes come with them
  // (otherwise the consent prompt would ask again and again)
  const grantId = ctx.oidc.result?.consent?.grantId
    || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  if (!grantId) return undefined;
  const grant = await ctx.oidc.provider.Grant.find(grantId);
  const { resource, scope } = ctx.oidc.params;
  if (grant && resource) {
    for (const r of Array.isArray(resource) ? resource : [resource]) grant.addResourceScope(r, scope ?? '');
    await grant.save();
  }
  return grant;
}

async function jwtAccessTokenClaims(ctx, token) {
  // a JWT access token carries the user's claims of its grant's scopes (userinfo refuses
  // a token with an audience, so this is where a resource server finds them)
  if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
  const login = loginOfSub(token.accountId);
  if (login === undefined) return undefined;
  const claims = config.users.get(login).claims;
  const scopes = new Set(String(token.scope ?? '').split(' '));
  for (const s of (await ctx.oidc.provider.Grant.find(token.grantId))?.getOIDCScope().split(' ') ?? []) scopes.add(s);
  const extra = {};
  for (const [scope, names] of Object.entries(SCOPE_CLAIMS)) {
    if (!scopes.has(scope)) continue;
    for (const name of names) if (name in claims) extra[name] = claims[name];
  }
  return extra;
}

async function subjectToken(provider, value) {
  // an opaque access token is stored; a JWT one is not (its signature and exp vouch for it)
  const parts = String(value).split('.');
  if (parts.length !== 3) {
    const token = await provider.AccessToken.find(value);
    return token?.isValid ? { accountId: token.accountId, scope: token.scope } : undefined;
  }
  const keys = provider.signingKeys.map((jwk) => crypto.createPublicKey({ key: jwk, format: 'jwk' }));
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], 'base64url');
  if (!keys.some((key) => crypto.verify('sha256', signed, key, signature))) return undefined;
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (claims.iss !== provider.issuer || !(claims.exp > now())) return undefined;
  return { accountId: claims.sub, scope: claims.scope };
}

function tokenExchange(provider) {
  // RFC 8693 for an access token of this provider: the calling client gets its own
  // access token and, with offline_access, a refresh token for the same account
  return async (ctx) => {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    const wanted = params.requested_token_type ?? ACCESS_TOKEN_TYPE;
    if (![ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE].includes(wanted)) {
      throw new errors.InvalidRequest('requested_token_type must be an access or refresh token');
    }
    if (!params.subject_token) throw new errors.InvalidRequest('subject_token is missing');
    const subject = await subjectToken(provider, params.subject_token);
    if (!subject) throw new errors.InvalidGrant('subject_token is invalid, expired or revoked');
    if (loginOfSub(subject.accountId) === undefined) throw new errors.InvalidGrant('subject_token names no known account');
    const allowed = new Set(CLIENT_SCOPE.split(' '));
    const requested = String(params.scope ?? subject.scope ?? '').split(' ').filter((s) => allowed.has(s));
    const scope = [...new Set(requested)].join(' ');
    if (wanted === REFRESH_TOKEN_TYPE && !requested.includes('offline_access')) {
      throw new errors.InvalidScope('a refresh token needs the offline_access scope');
    }
    const grant = new provider.Grant({ accountId: subject.accountId, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const common = { accountId: subject.accountId, client, grantId, gty: 'token_exchange', scope };
    const at = new provider.AccessToken(common);
    const body = {
      access_token: await at.save(),
      token_type: 'Bearer',
      expires_in: at.expiration,
      scope,
      issued_token_type: ACCESS_TOKEN_TYPE,
    };
    if (requested.includes('offline_access')) {
      const rt = new provider.RefreshToken({ ...common, rotations: 0, authTime: Math.floor(now()) });
      body.refresh_token = await rt.save();
    }
    ctx.body = body;
  };
}

function makeProvider(issuer) {
  const setting = (name) => () => config.settings[name];
  const keys = [signingKey()];
  const provider = new Provider(issuer, {
    adapter: Adapter,
    findAccount,
    jwks: { keys },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    routes: ROUTES,
    claims: { openid: ['sub'], ...SCOPE_CLAIMS },
    scopes: ['openid', 'offline_access', ...Object.keys(SCOPE_CLAIMS)],
    conformIdTokenClaims: true,
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // what the hub's clock and the provider's agree on: no grace after expiry
    clockTolerance: 0,
    ttl: {
      AccessToken: setting('access_token_lifetime'),
      RefreshToken: setting('refresh_token_lifetime'),
      IdToken: setting('id_token_lifetime'),
      AuthorizationCode: setting('code_lifetime'),
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 365 * 24 * 3600,
    },
    interactions: {
      policy: loginEveryTime(),
      url: (ctx, interaction) => `${config.realmPath}/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      ...(config.settings.jwt_access_tokens ? { resourceIndicators: jwtAccessTokens() } : {}),
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    renderError,
    extraTokenClaims: jwtAccessTokenClaims,
    ...(config.settings.jwt_access_tokens ? { loadExistingGrant: grantWithResource } : {}),
  });
  provider.signingKeys = keys;
  return provider;
}

// ---- HTTP ---------------------------------------------------------------------------------
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(text);
}

function adminAllowed(req) {
  if (!config.adminToken) return false;
  const header = req.headers.authorization ?? '';
  const given = Buffer.from(header.toLowerCase().startsWith('bearer ') ? header.slice(7).trim() : '');
  const want = Buffer.from(config.adminToken);
  return given.length === want.length && crypto.timingSafeEqual(given, want);
}

async function admin(req, res, path) {
  if (!config.adminToken) return sendJson(res, 404, { error: 'not_found' });
  if (!adminAllowed(req)) return sendJson(res, 403, { error: 'forbidden', error_description: 'admin token required' });
  let body = {};
  const text = await readBody(req);
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    return sendJson(res, 400, { error: 'invalid_request', error_description: 'body is not JSON' });
  }
  const bad = (message) => sendJson(res, 400, { error: 'invalid_request', error_description: message });
  const m = path.match(/^\/_admin\/(users|clients|tokens)\/([^/]+)$/);
  const name = m && decodeURIComponent(m[2]);
  try {
    if (m?.[1] === 'users') {
      const user = config.users.get(name);
      if (req.method === 'GET' || req.method === 'PATCH' || req.method === 'DELETE') {
        if (!user) return sendJson(res, 404, { error: 'not_found', error_description: `no user ${name}` });
      }
      if (req.method === 'PUT') {
        // a subject never changes
        const claims = { ...(body.claims ?? {}) };
        if (user && !claims.sub) claims.sub = user.claims.sub;
        config.users.set(name, makeUser(name, { password: body.password ?? user?.password, claims }, name));
      } else if (req.method === 'PATCH') {
        for (const [claim, value] of Object.entries(body.claims ?? {})) {
          if (value === null) {
            if (claim !== 'sub') delete user.claims[claim];
          } else {
            user.claims[claim] = value;
          }
        }
      } else if (req.method === 'DELETE') {
        const { sub } = user.claims;
        config.users.delete(name);
        for (const [key, entry] of store) if (entry.payload?.accountId === sub) store.delete(key);
        res.writeHead(204);
        return res.end();
      } else if (req.method !== 'GET') {
        return sendJson(res, 405, { error: 'method_not_allowed' });
      }
      return sendJson(res, 200, { login: name, claims: config.users.get(name).claims });
    }
    if (m?.[1] === 'clients' && req.method === 'PATCH') {
      const client = config.clients.get(name);
      if (!client) return sendJson(res, 404, { error: 'not_found' });
      if (typeof body.client_secret !== 'string' || !body.client_secret) return bad('client_secret must be a non-empty string');
      client.client_secret = body.client_secret;
      return sendJson(res, 200, { client_id: name });
    }
    if (m?.[1] === 'tokens' && req.method === 'GET') return sendJson(res, 200, liveTokenCounts(name));
    if (path === '/_admin/stats' && req.method === 'GET') return sendJson(res, 200, statsJson());
    if (path === '/_admin/stats/reset' && req.method === 'POST') {
      resetStats();
      return sendJson(res, 200, statsJson());
    }
    if (path === '/_admin/settings') {
      if (req.method === 'PUT') {
        const checked = Object.fromEntries(Object.entries(body).map(([k, v]) => [k, checkSetting(k, v)]));
        const fixed = Object.keys(checked).filter((k) => STARTUP_SETTINGS.has(k) && checked[k] !== config.settings[k]);
        if (fixed.length) return bad(`${fixed.join(', ')}: read at start-up, cannot change while running`);
        Object.assign(config.settings, checked);
      }
      return sendJson(res, 200, config.settings);
    }
    if (path === '/_admin/fault') {
      return sendJson(res, 501, {
        error: 'not_implemented',
        error_description: 'fault injection is done by the project\'s own provider (implementation="ours")',
      });
    }
  } catch (e) {
    if (e instanceof ConfigError) return bad(e.message);
    throw e;
  }
  return sendJson(res, 404, { error: 'not_found' });
}

async function interaction(provider, req, res) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    res.writeHead(400, { 'Content-Type': 'text/html; charset=utf-8' });
    return res.end(page('EGI Check-in (demo): error', '<h1>EGI Check-in (demo)</h1><p class="error">This login has expired: start again from the service.</p>'));
  }
  const action = `${config.realmPath}/interaction/${details.uid}`;
  const show = (status, error) => {
    res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(loginPage(action, details.params.client_id, error));
  };
  if (req.method === 'GET') return show(200);
  if (req.method !== 'POST') return show(405);
  const form = new URLSearchParams(await readBody(req));
  const login = form.get('username') ?? '';
  const user = config.users.get(login);
  const given = Buffer.from(form.get('password') ?? '');
  const want = Buffer.from(user?.password ?? '');
  if (!user || given.length !== want.length || !crypto.timingSafeEqual(given, want)) {
    return show(200, 'Wrong login or password.');
  }
  const accountId = user.claims.sub;
  // login and consent at once: the user consents to everything the client asked for, as a
  // Check-in user who accepted the service's terms once
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

function withConsentPrompt(req, authorizationPath) {
  // Check-in keeps a user's consent to offline access and issues refresh tokens without
  // prompt=consent; the certified provider follows the spec and drops offline_access unless
  // the request has it: add it (the login page grants consent with the login)
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== authorizationPath) return;
  const scope = (url.searchParams.get('scope') ?? '').split(' ');
  const prompt = (url.searchParams.get('prompt') ?? '').split(' ').filter(Boolean);
  if (!scope.includes('offline_access') || prompt.includes('consent') || prompt.includes('none')) return;
  url.searchParams.set('prompt', [...prompt, 'consent'].join(' '));
  req.url = url.pathname + url.search;
}

const server = http.createServer();
server.listen(Number(args.values.port), HOST, () => {
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}${config.realmPath}`;
  const provider = makeProvider(issuer);
  provider.proxy = false;
  if (config.settings.token_exchange) {
    provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(provider), [
      'subject_token', 'subject_token_type', 'requested_token_type', 'scope', 'audience', 'resource',
    ]);
  }
  provider.use(async (ctx, next) => {
    await (ctx.path === ROUTES.revocation ? revocation.run({}, next) : next());
    countCall(ctx);
  });
  provider.on('server_error', (ctx, err) => console.error('provider: server error', err));
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const started = Date.now();
    const { pathname } = new URL(req.url, 'http://x');
    res.on('finish', () => {
      // the path only: query strings carry codes, states and id_token_hints
      console.log(`${res.statusCode} ${req.method} ${pathname} ${Date.now() - started}ms`);
    });
    try {
      if (pathname.startsWith('/_admin/')) return await admin(req, res, pathname);
      if (pathname.startsWith(`${config.realmPath}/interaction/`)) return await interaction(provider, req, res);
      if (pathname === config.realmPath || pathname.startsWith(`${config.realmPath}/`)) {
        withConsentPrompt(req, config.realmPath + ROUTES.authorization);
        req.originalUrl = req.url;
        req.url = req.url.slice(config.realmPath.length) || '/';
        return callback(req, res);
      }
      sendJson(res, 404, { error: 'not_found' });
    } catch (e) {
      console.error('provider: error', e);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    }
  });
  console.log(`${READY_LINE}${issuer}`);
});
