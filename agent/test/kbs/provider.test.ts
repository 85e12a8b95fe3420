import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { type Broker, DENY_ALL, startBroker } from "../../../vm-test/kbs/broker.ts";
import { startCdh } from "../../../vm-test/kbs/cdh-server.ts";
import { EncryptSchema, type KbsConfig } from "../../src/config/providers/index.ts";
import { formatError } from "../../src/errors.ts";
import { clearKbsSessions } from "../../src/kbs/client.ts";
import { createProvider } from "../../src/providers/index.ts";
import { create } from "../../src/providers/kbs.ts";
import { MAX_KEY_BYTES } from "../../src/providers/key-size.ts";

const ROOTFS = new TextEncoder().encode("correct horse battery staple");
const ctx = { volume: "rootfs", configDir: "/etc/cryptpilot", freshKey: "never" } as const;

/** A kbs table as a user writes it, through the real config schema. */
function kbsConfig(table: Record<string, unknown>): KbsConfig {
  return v.parse(EncryptSchema, { kbs: table }) as KbsConfig;
}

const brokers: Broker[] = [];
afterEach(async () => {
  clearKbsSessions();
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
});

describe("kbs provider", () => {
  test("both config forms, through createProvider; rootfs + delta cost one attestation", async () => {
    const b = await startBroker({
      resources: { "default/key/rootfs": ROOTFS, "default/key/delta": new Uint8Array([1, 2, 3]) },
    });
    brokers.push(b);
    const upstream = await createProvider(
      kbsConfig({ kbs_url: b.url, key_uri: "kbs:///default/key/rootfs", tee: "sample" }),
      ctx,
    );
    const documented = await createProvider(
      kbsConfig({ url: `${b.url}/`, resource_path: "key/delta", tee: "sample" }),
      { ...ctx, volume: "delta" },
    );
    expect(upstream.describe()).toBe(`kbs ${b.url} resource default/key/rootfs tee sample`);
    expect(documented.describe()).toBe(`kbs ${b.url} resource default/key/delta tee sample`);
    expect(await upstream.getKey()).toEqual(ROOTFS);
    expect(Array.from(await documented.getKey())).toEqual([1, 2, 3]);
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 2 });
  });
  test("kbs_root_cert and retry settings reach the client", async () => {
    const c = kbsConfig({
      kbs_url: "https://kbs:8080",
      key_uri: "kbs:///a/b/c",
      retry_attempts: 3,
      retry_timeout_secs: 40,
      request_timeout_secs: 2,
      tee_key_algorithm: "RSA-OAEP-256",
    });
    expect(c).toMatchObject({
      retryAttempts: 3,
      retryTimeoutMs: 40_000,
      requestTimeoutMs: 2000,
      teeKeyAlgorithm: "RSA-OAEP-256",
    });
    const d = kbsConfig({ kbs_url: "https://kbs:8080", key_uri: "kbs:///a/b/c" });
    expect(d).toMatchObject({
      retryAttempts: 15,
      retryTimeoutMs: 180_000,
      // guest-components' default: a cold verifier can take ~40 s to answer /attest.
      requestTimeoutMs: 60_000,
      teeKeyAlgorithm: "ECDH-ES+A256KW",
    });
    expect(() => kbsConfig({ kbs_url: "https://kbs", key_uri: "kbs:///a/b/c", tee: "sgx" })).toThrow();
  });
  test("policy denial surfaces as one paragraph naming URL, step, status and the broker's reason", async () => {
    const b = await startBroker({ resources: { "default/key/rootfs": ROOTFS }, policy: DENY_ALL });
    brokers.push(b);
    const p = create(kbsConfig({ kbs_url: b.url, key_uri: "kbs:///default/key/rootfs", tee: "sample" }), ctx);
    const text = await p.getKey().then(
      () => "",
      (e) => formatError(e),
    );
    expect(text).toBe(
      `kbs key provider: resource request to ${b.url}/kbs/v0/resource/default/key/rootfs was refused: HTTP 401 PolicyDeny: Resource policy denied access to default/key/rootfs for TEE sample (default deny)\nHint: the KBS resource policy does not release this resource to this TEE/measurement`,
    );
  });
  test("an empty resource is refused", async () => {
    const b = await startBroker({ resources: { "default/key/rootfs": new Uint8Array() } });
    brokers.push(b);
    const p = create(kbsConfig({ kbs_url: b.url, key_uri: "kbs:///default/key/rootfs", tee: "sample" }), ctx);
    await expect(p.getKey()).rejects.toThrow("is empty");
  });
  test("daemon: a resource over MAX_KEY_BYTES from the CDH is refused, not used as a key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cdh-"));
    const cdh = await startCdh(join(dir, "cdh.sock"), {
      "default/key/rootfs": new Uint8Array(MAX_KEY_BYTES + 1).fill(9),
    });
    const p = create(
      kbsConfig({ cdh_type: "daemon", cdh_socket: cdh.socket, key_uri: "kbs:///default/key/rootfs" }),
      ctx,
    );
    await expect(p.getKey()).rejects.toThrow(
      `resource default/key/rootfs from confidential-data-hub ${cdh.socket} (volume rootfs) is ${MAX_KEY_BYTES + 1} bytes, more than the 64 KiB a key may have`,
    );
    await cdh.stop();
  });
  test("daemon: the CDH's error is reported with the socket and resource", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cdh-"));
    const cdh = await startCdh(join(dir, "cdh.sock"), {});
    const p = create(
      kbsConfig({ cdh_type: "daemon", cdh_socket: cdh.socket, key_uri: "kbs:///default/key/rootfs" }),
      ctx,
    );
    await expect(p.getKey()).rejects.toThrow(
      `confidential-data-hub at ${cdh.socket}: GetResource kbs:///default/key/rootfs failed: status 2: [CDH] [ERROR]: get resource failed`,
    );
    expect(cdh.requests).toEqual(["kbs:///default/key/rootfs"]);
    await cdh.stop();
  });
});
