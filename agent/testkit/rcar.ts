/**
 * The RCAR handshake driven by hand against the test broker (vm-test/kbs), bypassing the agent's
 * client: for tests that must send what the client never would (a stale digest, someone else's
 * quote, another protocol version) or keep the TEE key's private half for another implementation.
 */
import { canonicalJson } from "../src/kbs/canonical.ts";

/** A syntactically valid EC tee-pubkey whose private half nobody has: for attests meant to fail. */
export const DUMMY_TEE_PUBKEY = { kty: "EC", crv: "P-256", alg: "ECDH-ES+A256KW", x: "AA", y: "BB" };

/** POST of `body` as JSON to the broker's /kbs/v0/PATH. */
export function rcarPost(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}/kbs/v0/${path}`, { method: "POST", headers, body: JSON.stringify(body) });
}

/** /auth as `tee` with protocol 0.4.0: the session cookie (name=value) and the nonce. */
export async function rcarAuth(url: string, tee: string): Promise<{ cookie: string; nonce: string }> {
  const auth = await rcarPost(url, "auth", { version: "0.4.0", tee, "extra-params": "" });
  const cookie = auth.headers.get("set-cookie")!.split(";")[0]!;
  const { nonce } = (await auth.json()) as { nonce: string };
  return { cookie, nonce };
}

/** What the evidence must bind: SHA-384 of the canonical runtime data (RFC 8785), as trustee hashes it. */
export function runtimeDataDigest(teePubkey: unknown, nonce: string): Uint8Array {
  return new Uint8Array(
    new Bun.CryptoHasher("sha384")
      .update(canonicalJson({ "tee-pubkey": teePubkey, nonce, "additional-evidence": "" }))
      .digest(),
  );
}

/** /attest in the session `cookie` with `primaryEvidence` for `teePubkey` and `nonce`. */
export function rcarAttest(
  url: string,
  cookie: string,
  runtime: { nonce: string; teePubkey: unknown },
  primaryEvidence: unknown,
): Promise<Response> {
  return rcarPost(
    url,
    "attest",
    {
      "runtime-data": { nonce: runtime.nonce, "tee-pubkey": runtime.teePubkey },
      "tee-evidence": { primary_evidence: primaryEvidence, additional_evidence: "" },
    },
    { cookie },
  );
}
