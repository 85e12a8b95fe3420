/**
 * AAEL encoding: digests equal guest-components' test vectors; entries equal, byte for byte,
 * the AAEL events in trustee's event-log test data (read from a fetched trustee checkout at
 * test time: TRUSTEE_GIT_DIR, default the mirror under /work/.mirror; skipped, with a warning,
 * when absent); spec rules on the fields; records and standalone logs parse back.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { parseCcel } from "../../src/attest/ccel.ts";
import {
  AAEL_DOMAIN,
  aaelEvent,
  aaelText,
  EV_EVENT_TAG,
  encodeEntry,
  entryDigest,
  LOAD_CONFIG_UNTRUSTED,
  loadConfigUntrusted,
  replay,
} from "../../src/measure/aael.ts";
import { withAael } from "../../src/measure/evidence.ts";
import { LOG_END, parseRecords, standaloneLog } from "../../src/measure/records.ts";
import { referenceValue } from "../../src/measure/reference.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("entry digest", () => {
  // guest-components attestation-agent/src/eventlog/mod.rs test_event_digest (hash of the tagged event).
  const event = aaelEvent("domain", "operation", "content");
  test("sha256 and sha384 match guest-components' vectors", () => {
    expect(hex(entryDigest(event, "sha256"))).toBe(
      "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351",
    );
    expect(hex(entryDigest(event, "sha384"))).toBe(
      "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440fb00f3aa0609db7e49cd8d793f670d02",
    );
  });
});

/** One event of trustee's *_out.json (the fields compared here). */
interface TrusteeEvent {
  type_name: string;
  event: string;
  digests: { alg: string; digest: string }[];
  details: { string: string; data: { domain: string; operation: string; content: unknown } };
}

/** trustee's deps/eventlog/test_data/CCEL_AAEL_alibabacloud (a CCEL with AAEL events). */
function trusteeData(name: string): Buffer | undefined {
  const candidates = [
    process.env.TRUSTEE_GIT_DIR,
    "/work/.mirror/openanolis+trustee/repo",
    "/work/.mirror/confidential-containers+trustee/repo",
  ].filter((d): d is string => !!d && existsSync(d));
  for (const dir of candidates) {
    const r = spawnSync("git", ["--git-dir", dir, "show", `HEAD:deps/eventlog/test_data/${name}`], {
      maxBuffer: 4 << 20,
    });
    if (r.status === 0) return r.stdout;
  }
  return undefined;
}

const ccelAael = trusteeData("CCEL_AAEL_alibabacloud");
const ccelAaelOut = trusteeData("CCEL_AAEL_alibabacloud_out.json");
if (!ccelAael || !ccelAaelOut)
  console.warn("skipping the trustee test-data comparison: no trustee checkout (set TRUSTEE_GIT_DIR)");

describe.skipIf(!ccelAael || !ccelAaelOut)("trustee's CCEL_AAEL test data", () => {
  test("each AAEL event there is exactly what encodeEntry writes", () => {
    const log = new Uint8Array(ccelAael!);
    const expected = (JSON.parse(ccelAaelOut!.toString()).uefi_event_logs as TrusteeEvent[]).filter(
      (e) => e.type_name === "EV_EVENT_TAG",
    );
    const tagged = parseCcel(log).events.filter((e) => e.type === EV_EVENT_TAG);
    expect(tagged.length).toBe(expected.length);
    expect(tagged.length).toBeGreaterThan(0);
    tagged.forEach((ev, i) => {
      const want = expected[i]!;
      const { domain, operation, content } = want.details.data;
      const event = aaelEvent(
        domain,
        operation,
        typeof content === "string" ? content : want.details.string.slice(`${domain} ${operation} `.length),
      );
      expect(aaelText(event)).toBe(want.details.string);
      const bytes = encodeEntry(event, ev.mrIndex, "sha384");
      expect(ccelAael!.indexOf(Buffer.from(bytes))).toBeGreaterThan(0);
      expect(hex(entryDigest(event, "sha384"))).toBe(want.digests[0]!.digest);
      expect(Buffer.from(ev.data).toString("base64")).toBe(want.event);
    });
  });
});

describe("fields", () => {
  test("domain and operation without white space, content without line feeds", () => {
    expect(() => aaelEvent("a b", "op", "c")).toThrow(/domain/);
    expect(() => aaelEvent("d", "op\t", "c")).toThrow(/operation/);
    expect(() => aaelEvent("d", "op", "line\nfeed")).toThrow(/content/);
    expect(() => aaelEvent("d", "op", "")).toThrow(/content/);
    expect(aaelText(aaelEvent("d", "op", "with spaces"))).toBe("d op with spaces");
  });
  test("load_config_untrusted takes a lowercase hex sha384 only", () => {
    const h = createHash("sha384").update("bundle").digest("hex");
    const e = loadConfigUntrusted(h);
    expect(aaelText(e)).toBe(`${AAEL_DOMAIN} ${LOAD_CONFIG_UNTRUSTED} ${h}`);
    expect(() => loadConfigUntrusted(h.toUpperCase())).toThrow(/96 lowercase hex/);
    expect(() => loadConfigUntrusted(h.slice(2))).toThrow(/96 lowercase hex/);
    expect(() => loadConfigUntrusted(`${h} x`)).toThrow(/96 lowercase hex/);
  });
});

describe("records and logs", () => {
  const a = aaelEvent("d", "op", "one");
  const b = loadConfigUntrusted(createHash("sha384").update("x").digest("hex"));
  const records = Buffer.concat([encodeEntry(a, 23, "sha256"), encodeEntry(b, 23, "sha256")]);
  test("records parse back with their digests", () => {
    const parsed = parseRecords(records);
    expect(parsed.map((r) => r.mrIndex)).toEqual([23, 23]);
    expect(hex(parsed[1]!.digests[0]!.digest)).toBe(hex(entryDigest(b, "sha256")));
  });
  test("truncated or foreign records are refused", () => {
    expect(() => parseRecords(records.subarray(0, records.length - 1))).toThrow(/truncated/);
    const foreign = Buffer.from(records);
    foreign.writeUInt32LE(0xd, 4);
    expect(() => parseRecords(foreign)).toThrow(/EV_EVENT_TAG/);
  });
  test("a standalone log and a CCEL with the records appended parse as TCG2 logs", () => {
    const log = standaloneLog(new Uint8Array(records), ["sha256"]);
    expect(parseCcel(log).events.length).toBe(2);
    expect(Buffer.from(log.subarray(-8)).equals(Buffer.from(LOG_END))).toBe(true);
    // A CCEL as readCcel returns it: header + one event + end marker.
    const ccel = withAael(undefined, new Uint8Array(records), "sha384")!;
    const both = withAael(ccel, new Uint8Array(records), "sha384")!;
    expect(parseCcel(both).events.length).toBe(4);
    expect(withAael(ccel, undefined, "sha384")).toBe(ccel);
  });
  test("replay and reference values agree", () => {
    const ref = referenceValue(b);
    const tpm = ref.registers.find((r) => r.mr_index === 23)!;
    expect(tpm.value_if_only_entry).toBe(
      hex(replay("sha256", new Uint8Array(32), [entryDigest(b, "sha256")])),
    );
    const tdx = ref.registers.find((r) => r.mr_index === 4)!;
    expect(tdx.alg).toBe("sha384");
    expect(tdx.entry_digest).toBe(hex(entryDigest(b, "sha384")));
    expect(ref.event).toBe(aaelText(b));
  });
});
