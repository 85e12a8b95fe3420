/**
 * TPM runtime measurement against a real swtpm, and the test broker's AAEL check:
 * - replay: the PCR value computed from our records equals the PCR the TPM reports after our
 *   extends;
 * - the evidence carries the records as `aa_eventlog`, its quote (checked by tpm2_checkquote)
 *   covers the PCR, and the broker's verifier replays it and returns the entries;
 * - the verifier refuses a log that does not replay, an entry whose digest is not its data's
 *   hash, and a PCR extended without a log;
 * - a broker policy pinning the configuration hash releases the key for that hash only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aaelMatches, verifyTpmAael } from "../../../vm-test/kbs/aael.ts";
import { type Broker, evaluatePolicy, startBroker } from "../../../vm-test/kbs/broker.ts";
import { type TpmEvidence, tpmEvidence } from "../../src/attest/tpm.ts";
import { clearKbsSessions, getKbsResource } from "../../src/kbs/client.ts";
import {
  AAEL_DOMAIN,
  aaelEvent,
  encodeEntry,
  entryDigest,
  LOAD_CONFIG_UNTRUSTED,
  loadConfigUntrusted,
  replay,
} from "../../src/measure/aael.ts";
import { type Measurer, openMeasurer } from "../../src/measure/open.ts";
import { parseRecords, standaloneLog } from "../../src/measure/records.ts";
import { TPM_PCR } from "../../src/measure/registers.ts";
import { withTpm } from "../../src/tpm/esys.ts";
import { verifyTpmEvidence } from "../../testkit/checkquote.ts";
import { hasSwtpm, type Swtpm, startSwtpm } from "../../testkit/swtpm.ts";

if (!hasSwtpm) console.warn("skipping TPM measurement tests: swtpm or tpm2-tools not installed");

const configHash = (s: string) => createHash("sha384").update(s).digest("hex");
const GOOD = configHash("the expected bundle");
const KEY = new TextEncoder().encode("key for the expected configuration");
const KEY_PATH = "default/key/rootfs";
const CONFIG_KEY = `${AAEL_DOMAIN} ${LOAD_CONFIG_UNTRUSTED}`;
const FAST = {
  attempts: 1,
  totalTimeoutMs: 30_000,
  requestTimeoutMs: 20_000,
  baseDelayMs: 50,
  maxDelayMs: 100,
};

describe.skipIf(!hasSwtpm)("TPM PCR measurement (swtpm)", () => {
  let tpm: Swtpm;
  let dir: string;
  let records: string;
  let evidence: TpmEvidence;
  const digest = createHash("sha384").update("runtime data").digest();
  const first = aaelEvent("example.com", "boot", "stage one");
  const second = loadConfigUntrusted(GOOD);

  beforeAll(async () => {
    tpm = await startSwtpm();
    dir = mkdtempSync(join(tmpdir(), "measure-tpm-"));
    records = join(dir, "aael");
    const m = await openMeasurer({ tee: "tpm", tcti: tpm.tcti, env: {}, records });
    if ("unavailable" in m) throw new Error(m.unavailable);
    expect(m.register).toBe(`TPM PCR ${TPM_PCR} (SHA-256)`);
    await (m as Measurer).extend(first);
    await m.extend(second);
    evidence = await tpmEvidence(digest, {
      tcti: tpm.tcti,
      eventLogPath: join(dir, "none"),
      aaelPath: records,
    });
  });
  afterAll(async () => {
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the PCR replayed from our records equals the PCR the TPM reports", async () => {
    const parsed = parseRecords(new Uint8Array(readFileSync(records)));
    expect(parsed.map((r) => r.mrIndex)).toEqual([TPM_PCR, TPM_PCR]);
    const replayed = replay(
      "sha256",
      new Uint8Array(32),
      parsed.map((r) => r.digests[0]!.digest),
    );
    const reported = await withTpm(tpm.tcti, (esys) =>
      esys.pcrRead([{ bank: "sha256", pcrs: [TPM_PCR] }]).get(`sha256:${TPM_PCR}`),
    );
    expect(Buffer.from(reported!).toString("hex")).toBe(Buffer.from(replayed).toString("hex"));
    expect(evidence.quote.SHA256!.pcrs[TPM_PCR]).toBe(Buffer.from(replayed).toString("hex"));
  });

  test("the evidence's quote verifies and the broker's verifier returns the entries", async () => {
    await verifyTpmEvidence(evidence, digest);
    expect(evidence.aa_eventlog).not.toBeNull();
    const entries = verifyTpmAael(evidence as unknown as Record<string, unknown>);
    expect(entries).toEqual([
      { domain: "example.com", operation: "boot", content: "stage one", index: TPM_PCR },
      { domain: AAEL_DOMAIN, operation: LOAD_CONFIG_UNTRUSTED, content: GOOD, index: TPM_PCR },
    ]);
  });

  const withLog = (log: Uint8Array | null) =>
    ({ ...evidence, aa_eventlog: log && Buffer.from(log).toString("base64") }) as unknown as Record<
      string,
      unknown
    >;

  test("a log naming another configuration does not replay and is refused", () => {
    const forged = Buffer.concat([
      encodeEntry(first, TPM_PCR, "sha256"),
      encodeEntry(loadConfigUntrusted(configHash("another bundle")), TPM_PCR, "sha256"),
    ]);
    expect(() => verifyTpmAael(withLog(standaloneLog(forged, ["sha256"])))).toThrow(
      new RegExp(`PCR ${TPM_PCR} replays to`),
    );
  });

  test("an entry whose digest is not the hash of its data is refused", () => {
    // The digests of the real entries (so it would replay), the text of another configuration.
    const real = encodeEntry(second, TPM_PCR, "sha256");
    const other = encodeEntry(loadConfigUntrusted(configHash("another bundle")), TPM_PCR, "sha256");
    const forged = Buffer.from(other);
    forged.set(entryDigest(second, "sha256"), 14);
    expect(real.length).toBe(other.length);
    const log = Buffer.concat([encodeEntry(first, TPM_PCR, "sha256"), forged]);
    expect(() => verifyTpmAael(withLog(standaloneLog(log, ["sha256"])))).toThrow(
      /not the hash of its event data/,
    );
  });

  test("a PCR extended without a log is refused; a truncated log too", () => {
    expect(() => verifyTpmAael(withLog(null))).toThrow(/does not replay/);
    const whole = standaloneLog(new Uint8Array(readFileSync(records)), ["sha256"]);
    expect(() => verifyTpmAael(withLog(whole.subarray(0, whole.length - 30)))).toThrow(/aa_eventlog/);
  });
});

describe("broker policy on AAEL entries", () => {
  const entry = (content: string) => ({
    domain: AAEL_DOMAIN,
    operation: LOAD_CONFIG_UNTRUSTED,
    content,
    index: 23,
  });
  test("aaelMatches: listed content required; empty list forbids the entry", () => {
    expect(aaelMatches({ [CONFIG_KEY]: [GOOD] }, [entry(GOOD)])).toBe(true);
    expect(aaelMatches({ [CONFIG_KEY]: [GOOD] }, [entry(configHash("x"))])).toBe(false);
    expect(aaelMatches({ [CONFIG_KEY]: [GOOD] }, [])).toBe(false);
    expect(aaelMatches({ [CONFIG_KEY]: [GOOD] }, [entry(GOOD), entry(configHash("x"))])).toBe(false);
    expect(aaelMatches({ [CONFIG_KEY]: [] }, [])).toBe(true);
    expect(aaelMatches({ [CONFIG_KEY]: [] }, [entry(GOOD)])).toBe(false);
    expect(aaelMatches(undefined, [entry(GOOD)])).toBe(true);
  });
  test("evaluatePolicy applies the rule only when the entries match", () => {
    const policy = {
      default: "deny" as const,
      rules: [{ resource: "default/key/*", aael: { [CONFIG_KEY]: [GOOD] }, effect: "allow" as const }],
    };
    expect(evaluatePolicy(policy, KEY_PATH, "tpm", [entry(GOOD)]).allow).toBe(true);
    expect(evaluatePolicy(policy, KEY_PATH, "tpm", [entry(configHash("x"))]).allow).toBe(false);
    expect(evaluatePolicy(policy, KEY_PATH, "tpm").allow).toBe(false);
  });
});

describe.skipIf(!hasSwtpm)("key release pinned to the configuration hash (swtpm + broker)", () => {
  let tpm: Swtpm;
  let broker: Broker;
  let dir: string;
  beforeAll(async () => {
    tpm = await startSwtpm();
    dir = mkdtempSync(join(tmpdir(), "measure-kbs-"));
    broker = await startBroker({
      resources: { [KEY_PATH]: KEY },
      allowTees: ["tpm"],
      policy: {
        default: "deny",
        rules: [{ resource: "default/key/*", aael: { [CONFIG_KEY]: [GOOD] }, effect: "allow" }],
      },
    });
  });
  afterAll(async () => {
    clearKbsSessions();
    await broker?.stop();
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const fetchKey = (aaelPath: string) =>
    getKbsResource(
      {
        url: broker.url,
        tee: "tpm",
        retry: FAST,
        attestation: {
          env: {},
          paths: { tsmRoot: "/nonexistent", sysRoot: dir },
          tpm: { tcti: tpm.tcti, eventLogPath: join(dir, "none"), aaelPath },
        },
      },
      KEY_PATH,
    );

  test("the expected bundle's hash releases the key; after another bundle is measured, it is refused", async () => {
    const records = join(dir, "aael");
    const m = await openMeasurer({ tee: "tpm", tcti: tpm.tcti, env: {}, records });
    if ("unavailable" in m) throw new Error(m.unavailable);
    await m.extend(loadConfigUntrusted(GOOD));
    expect(await fetchKey(records)).toEqual(KEY);
    clearKbsSessions();
    // Same machine, a second (unexpected) configuration measured: the policy no longer matches.
    await m.extend(loadConfigUntrusted(configHash("unexpected bundle")));
    await expect(fetchKey(records)).rejects.toThrow(/PolicyDeny|denied/);
    clearKbsSessions();
    // Hiding the second entry from the log does not help: the PCR no longer replays.
    writeFileSync(records, encodeEntry(loadConfigUntrusted(GOOD), TPM_PCR, "sha256"));
    await expect(fetchKey(records)).rejects.toThrow(/does not replay/);
  }, 60_000);
});
