/**
 * RCAR with TPM evidence from a real swtpm: the broker verifies the quotes with tpm2_checkquote
 * against the runtime-data digest it recomputes, so a quote over anything else is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Broker, startBroker } from "../../../vm-test/kbs/broker.ts";
import { tpmEvidence } from "../../src/attest/tpm.ts";
import { clearKbsSessions, getKbsResource } from "../../src/kbs/client.ts";
import { DUMMY_TEE_PUBKEY, rcarAttest, rcarAuth, runtimeDataDigest } from "../../testkit/rcar.ts";
import { hasSwtpm, type Swtpm, startSwtpm } from "../../testkit/swtpm.ts";

if (!hasSwtpm) console.warn("skipping KBS TPM tests: swtpm or tpm2-tools not installed");

const KEY = new TextEncoder().encode("tpm-attested key");
const FAST = {
  attempts: 2,
  totalTimeoutMs: 30_000,
  requestTimeoutMs: 20_000,
  baseDelayMs: 50,
  maxDelayMs: 100,
};

describe.skipIf(!hasSwtpm)("KBS with TPM evidence (swtpm)", () => {
  let tpm: Swtpm;
  let broker: Broker;
  beforeAll(async () => {
    tpm = await startSwtpm();
    broker = await startBroker({ resources: { "default/key/rootfs": KEY }, allowTees: ["tpm"] });
  });
  afterAll(async () => {
    clearKbsSessions();
    await broker?.stop();
    await tpm?.stop();
  });

  test("tee = tpm: quote bound to the runtime data, verified by tpm2_checkquote, key released", async () => {
    const sys = mkdtempSync(join(tmpdir(), "sys-"));
    const key = await getKbsResource(
      {
        url: broker.url,
        tee: "tpm",
        retry: FAST,
        attestation: {
          env: {},
          paths: { tsmRoot: "/nonexistent", sysRoot: sys },
          tpm: { tcti: tpm.tcti, eventLogPath: join(sys, "none") },
        },
      },
      "default/key/rootfs",
    );
    expect(key).toEqual(KEY);
    expect(broker.stats.attestations).toBe(1);
  }, 60_000);

  test("a valid quote over another digest is refused by the broker", async () => {
    const { cookie, nonce } = await rcarAuth(broker.url, "tpm");
    const evidence = await tpmEvidence(runtimeDataDigest(DUMMY_TEE_PUBKEY, "stale"), {
      tcti: tpm.tcti,
      eventLogPath: "/nonexistent",
    });
    const res = await rcarAttest(broker.url, cookie, { nonce, teePubkey: DUMMY_TEE_PUBKEY }, evidence);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toMatch(
      /tpm evidence: tpm2_checkquote rejected the sha256 quote/,
    );
  }, 60_000);
});
