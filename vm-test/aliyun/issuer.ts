/** A test OIDC issuer: an RS256 key whose public JWK the test STS trusts, and tokens signed with it. */
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

export interface Issuer {
  issuer: string;
  audience: string;
  jwk: JWK;
  token(claims?: { exp?: number; aud?: string; iss?: string; sub?: string }): Promise<string>;
}

/** `exp` defaults to 10 minutes from now (seconds since the epoch, as in the JWT). */
export async function makeIssuer(issuer: string, audience: string): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "test-key", alg: "RS256", use: "sig" };
  return {
    issuer,
    audience,
    jwk,
    token: (c = {}) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "RS256", kid: "test-key", typ: "JWT" })
        .setIssuer(c.iss ?? issuer)
        .setAudience(c.aud ?? audience)
        .setSubject(c.sub ?? "system:serviceaccount:cvm:boot")
        .setIssuedAt()
        .setExpirationTime(c.exp ?? Math.floor(Date.now() / 1000) + 600)
        .sign(privateKey),
  };
}
