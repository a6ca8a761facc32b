// PostGraphile's preset for bench/peer.py: Amber, production mode (no GraphiQL, no explain,
// no watch), on the hub's database, every request's bearer token verified against the
// hub's published signing keys (ES256) in grafast.context, as PostGraphile V5 advises.
//
// Settings come from the environment bench/peer.py gives the Node process:
//   PEER_DATABASE_URL  the hub's database
//   PEER_SCHEMAS       schemas to expose, comma-separated (public and the bench's own)
//   PEER_POOL_MAX      most PostgreSQL connections (the hub's db_pool_max)
//   PEER_PORT          port to listen on (127.0.0.1)
//   PEER_JWKS_FILE     the hub's /.well-known/jwks.json, saved
//   PEER_ISSUER, PEER_AUDIENCE   the `iss` and `aud` the hub puts in its access tokens
//   PEER_VERIFY        "each": a full jsonwebtoken.verify (signature and claims) on every
//                      request, as PostGraphile's own JWT support does; "remembered": a
//                      token's signature and claims are checked once and its expiry on
//                      every request, as the hub's verifier does (auth/tokens.py)
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";

import jwt from "jsonwebtoken";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const env = process.env;
const ISSUER = env.PEER_ISSUER;
const AUDIENCE = env.PEER_AUDIENCE;
const REMEMBER = env.PEER_VERIFY === "remembered";
const REMEMBERED_TOKENS = 10_000; // as the hub's VERIFIED_TOKENS
const LEEWAY_SECONDS = 30; // as the hub's CLOCK_LEEWAY_SECONDS

const keys = new Map(
  JSON.parse(readFileSync(env.PEER_JWKS_FILE, "utf8")).keys.map((jwk) => [
    jwk.kid,
    createPublicKey({ key: jwk, format: "jwk" }),
  ]),
);

/** An error the client sees as a 401 rather than a 500. */
function refused(message) {
  return Object.assign(new Error(message), { statusCode: 401, safeMessage: true });
}

/** The claims of an access token the hub issued for this API, or a 401. */
function verified(token) {
  let decoded;
  try {
    decoded = jwt.decode(token, { complete: true });
  } catch {
    decoded = null;
  }
  const key = decoded && keys.get(decoded.header.kid);
  if (!key) throw refused("the token is malformed or its signing key is unknown");
  if (String(decoded.header.typ).toLowerCase().replace(/^application\//, "") !== "at+jwt") {
    throw refused("not an access token (typ must be at+jwt)");
  }
  let claims;
  try {
    claims = jwt.verify(token, key, {
      algorithms: ["ES256"],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: LEEWAY_SECONDS,
    });
  } catch (error) {
    throw refused(`invalid token: ${error.message}`);
  }
  for (const name of ["exp", "sub", "client_id", "jti"]) {
    if (claims[name] === undefined) throw refused(`the token has no ${name}`);
  }
  return claims;
}

const remembered = new Map(); // token → claims whose signature checked out (insertion order = age)

function claimsOf(token) {
  if (!REMEMBER) return verified(token);
  let claims = remembered.get(token);
  if (claims === undefined) {
    claims = verified(token);
    remembered.set(token, claims);
    if (remembered.size > REMEMBERED_TOKENS) remembered.delete(remembered.keys().next().value);
  } else if (claims.exp + LEEWAY_SECONDS < Date.now() / 1000) {
    throw refused("the token is expired");
  }
  return claims;
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: env.PEER_DATABASE_URL,
      schemas: (env.PEER_SCHEMAS ?? "public").split(","),
      poolConfig: { max: Number(env.PEER_POOL_MAX ?? 10) },
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(env.PEER_PORT ?? 5678),
    graphiql: false,
    watch: false,
  },
  grafast: {
    explain: false,
    context(requestContext) {
      const header = requestContext.node?.req?.headers?.authorization;
      const [scheme, token] = typeof header === "string" ? header.split(" ") : [];
      if (scheme?.toLowerCase() !== "bearer" || !token) {
        throw refused("a bearer token is required");
      }
      // Claims stay in the context (no pgSettings): the hub does not pass them to
      // PostgreSQL either, and pgSettings would add a transaction to every request.
      return { jwtClaims: claimsOf(token) };
    },
  },
};

export default preset;
