/**
 * Hostile inputs to runtime measurement: a records file grown past RECORDS_MAX (tmpfs is the
 * guest's, but a bug or a second writer must not make the evidence unbounded) is refused, not
 * read; records with absurd counts or sizes fail on the buffer's bounds; the broker's AAEL
 * check refuses an oversized log before decoding and a log with a huge declared event size.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EVENTLOG_B64_MAX, verifyTpmAael } from "../../../vm-test/kbs/aael.ts";
import { aaelEvent, encodeEntry } from "../../src/measure/aael.ts";
import {
  appendRecord,
  parseRecords,
  RECORDS_MAX,
  readRecords,
  specIdHeader,
} from "../../src/measure/records.ts";
import { bounded } from "./limits.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hostile-measure-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entry = encodeEntry(aaelEvent("d", "op", "c"), 23, "sha256");
const pcrs = Array.from({ length: 24 }, () => "00".repeat(32));

describe("records", () => {
  test("a records file past RECORDS_MAX is refused for reading and appending", async () => {
    const path = join(dir, "big");
    writeFileSync(path, "", { mode: 0o600 });
    truncateSync(path, 1 << 30); // sparse 1 GiB
    await bounded(
      async () => {
        expect(() => readRecords(path)).toThrow(new RegExp(`larger than ${RECORDS_MAX}`));
        expect(() => appendRecord(path, entry)).toThrow(/would exceed/);
      },
      { ms: 2000, mib: 64 },
    );
  });

  test("absurd digest counts and event sizes end at the buffer", async () => {
    const count = Buffer.from(entry);
    count.writeUInt32LE(0xffffffff, 8);
    const size = Buffer.from(entry);
    size.writeUInt32LE(0xffffffff, 14 + 32);
    await bounded(
      async () => {
        expect(() => parseRecords(count)).toThrow(/digests/);
        expect(() => parseRecords(size)).toThrow(/truncated/);
      },
      { ms: 2000, mib: 64 },
    );
  });
});

describe("broker AAEL check", () => {
  test("an oversized aa_eventlog is refused before decoding", async () => {
    const huge = "A".repeat(EVENTLOG_B64_MAX + 4);
    await bounded(
      async () => {
        expect(() => verifyTpmAael({ quote: { SHA256: { pcrs } }, aa_eventlog: huge })).toThrow(
          /larger than/,
        );
      },
      { ms: 2000, mib: 128 },
    );
  });

  test("a declared event size past the end is refused", async () => {
    const forged = Buffer.from(entry);
    forged.writeUInt32LE(0x7fffffff, 14 + 32);
    const log = Buffer.concat([specIdHeader(["sha256"]), forged]).toString("base64");
    await bounded(
      async () => {
        expect(() => verifyTpmAael({ quote: { SHA256: { pcrs } }, aa_eventlog: log })).toThrow(
          /aa_eventlog: .*truncated/,
        );
      },
      { ms: 2000, mib: 64 },
    );
  });

  test("a log that is not base64 text, or no quoted PCRs, is refused", () => {
    expect(() => verifyTpmAael({ quote: { SHA256: { pcrs } }, aa_eventlog: 42 })).toThrow(
      /not a base64 string/,
    );
    expect(() => verifyTpmAael({ aa_eventlog: null })).toThrow(/no quoted SHA-256 PCRs/);
  });
});
