/**
 * JWE interoperability with implementations other than the `jose` npm library: the `jose` CLI
 * (Debian package, libjose; it has ECDH-ES+A256KW but no RSA-OAEP*) and openssl for the
 * RSA-OAEP-256 key unwrap.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createDecipheriv } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, exportPKCS8, generateKeyPair, importJWK, type JWK } from "jose";
import { startBroker } from "../../../vm-test/kbs/broker.ts";
import { decryptResource, type TeePubKey } from "../../src/kbs/keypair.ts";
import { rcarAttest, rcarAuth, runtimeDataDigest } from "../../testkit/rcar.ts";

const SECRET = new TextEncoder().encode("disk passphrase from the broker");
const dir = mkdtempSync(join(tmpdir(), "jose-cli-"));
const broker = await startBroker({ resources: { "default/key/rootfs": SECRET } });
afterAll(() => broker.stop());

function run(cmd: string[], stdin?: Uint8Array): Uint8Array {
  const r = Bun.spawnSync(cmd, { stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

/** RCAR by hand with a key whose private half we can hand to the other implementation. */
async function fetchJwe(pub: TeePubKey): Promise<Record<string, string>> {
  const { cookie, nonce } = await rcarAuth(broker.url, "sample");
  const digest = Buffer.from(runtimeDataDigest(pub, nonce)).toString("base64");
  const attest = await rcarAttest(
    broker.url,
    cookie,
    { nonce, teePubkey: pub },
    { svn: "1", report_data: digest },
  );
  expect(attest.status).toBe(200);
  const res = await fetch(`${broker.url}/kbs/v0/resource/default/key/rootfs`, { headers: { cookie } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, string>;
}

describe("JWE cross-checks", () => {
  test("the broker's ECDH-ES+A256KW JWE decrypts with `jose jwe dec`", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", {
      crv: "P-256",
      extractable: true,
    });
    const pub = await exportJWK(publicKey);
    const jwe = await fetchJwe({ kty: "EC", crv: "P-256", alg: "ECDH-ES+A256KW", x: pub.x!, y: pub.y! });
    expect(JSON.parse(Buffer.from(jwe.protected!, "base64url").toString())).toMatchObject({
      alg: "ECDH-ES+A256KW",
      enc: "A256GCM",
    });
    expect(Buffer.from(jwe.encrypted_key!, "base64url").length).toBe(40);
    writeFileSync(join(dir, "jwe.json"), JSON.stringify(jwe));
    writeFileSync(
      join(dir, "key.jwk"),
      JSON.stringify({ ...(await exportJWK(privateKey)), alg: "ECDH-ES+A256KW" }),
    );
    const plain = run([
      "jose",
      "jwe",
      "dec",
      "-i",
      join(dir, "jwe.json"),
      "-k",
      join(dir, "key.jwk"),
      "-O",
      "-",
    ]);
    expect(Buffer.from(plain).equals(Buffer.from(SECRET))).toBe(true);
  });

  test("a JWE made by `jose jwe enc` decrypts with our client's decryptResource", async () => {
    const keyFile = join(dir, "cli.jwk");
    writeFileSync(keyFile, run(["jose", "jwk", "gen", "-i", '{"kty":"EC","crv":"P-256"}']));
    const jwk = { ...(JSON.parse(readFileSync(keyFile, "utf8")) as JWK), alg: "ECDH-ES+A256KW" };
    writeFileSync(keyFile, JSON.stringify(jwk));
    const pubFile = join(dir, "cli.pub.jwk");
    run(["jose", "jwk", "pub", "-i", keyFile, "-o", pubFile]);
    const jwe = JSON.parse(
      new TextDecoder().decode(
        run(
          ["jose", "jwe", "enc", "-i", '{"protected":{"enc":"A256GCM"}}', "-I", "-", "-k", pubFile],
          SECRET,
        ),
      ),
    );
    const privateKey = (await importJWK(jwk, "ECDH-ES+A256KW")) as CryptoKey;
    const key = {
      alg: "ECDH-ES+A256KW" as const,
      privateKey,
      publicJwk: { kty: "EC" as const, crv: "P-256", alg: "ECDH-ES+A256KW", x: jwk.x!, y: jwk.y! },
    };
    expect(await decryptResource(jwe, key)).toEqual(SECRET);
    // The same JWE must not pass for another algorithm.
    await expect(decryptResource(jwe, { ...key, alg: "RSA-OAEP-256" })).rejects.toThrow();
  });

  test("the broker's RSA-OAEP-256 JWE: CEK unwrapped by openssl, content by AES-256-GCM with AAD = protected", async () => {
    const { publicKey, privateKey } = await generateKeyPair("RSA-OAEP-256", {
      modulusLength: 2048,
      extractable: true,
    });
    const pub = await exportJWK(publicKey);
    const jwe = await fetchJwe({ kty: "RSA", alg: "RSA-OAEP-256", n: pub.n!, e: pub.e! });
    writeFileSync(join(dir, "rsa.pem"), await exportPKCS8(privateKey));
    writeFileSync(join(dir, "cek.enc"), Buffer.from(jwe.encrypted_key!, "base64url"));
    const cek = run([
      "openssl",
      "pkeyutl",
      "-decrypt",
      "-inkey",
      join(dir, "rsa.pem"),
      "-in",
      join(dir, "cek.enc"),
      "-pkeyopt",
      "rsa_padding_mode:oaep",
      "-pkeyopt",
      "rsa_oaep_md:sha256",
      "-pkeyopt",
      "rsa_mgf1_md:sha256",
    ]);
    expect(cek.length).toBe(32);
    const d = createDecipheriv("aes-256-gcm", cek, Buffer.from(jwe.iv!, "base64url"));
    d.setAAD(Buffer.from(jwe.protected!, "ascii"));
    d.setAuthTag(Buffer.from(jwe.tag!, "base64url"));
    const plain = Buffer.concat([d.update(Buffer.from(jwe.ciphertext!, "base64url")), d.final()]);
    expect(plain.equals(Buffer.from(SECRET))).toBe(true);
  });
});
