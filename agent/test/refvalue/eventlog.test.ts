/**
 * The real TDX CCEL logs from trustee's test data: every event parses to what trustee's parser
 * recorded (*_out.json), and GRUB's command-line event hashes as our reference values predict:
 * the entry's `linux` command, run through our grub.cfg reader, gives the measured digest.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { FileTree } from "../../src/disk/image/fs.ts";
import {
  EV_EFI_BOOT_SERVICES_APPLICATION,
  EV_EVENT_TAG,
  EV_IPL,
  eventText,
  imageLoadFilePaths,
  parseEventLog,
  taggedEvent,
} from "../../src/refvalue/eventlog.ts";
import { resolveBootEntry } from "../../src/refvalue/grub.ts";
import { loaderCmdline } from "../../src/refvalue/grubscript.ts";
import { hashHex } from "../../src/refvalue/hash.ts";

const DIR = join(import.meta.dir, "../../../../shared/fixtures/trustee/eventlog");
const have = existsSync(DIR);
if (!have) console.warn(`skipping CCEL fixture tests: ${DIR} is missing`);

const LOGS = ["CCEL_AAEL_alibabacloud", "CCEL_data_grub", "CCEL_data_ovmf"];

interface Recorded {
  index: number;
  type_name: string;
  event: string;
  digests: { alg: string; digest: string }[];
  details: { device_paths?: string[]; string?: string };
}

const emptyTree: FileTree = {
  name: "(none)",
  kind: () => undefined,
  readFile: () => {
    throw new Error("no files");
  },
  list: () => [],
};

describe.skipIf(!have)("CCEL fixtures", () => {
  for (const name of LOGS) {
    test(`${name} parses as trustee parsed it`, () => {
      const log = parseEventLog(readFileSync(join(DIR, name)), name);
      const recorded = JSON.parse(readFileSync(join(DIR, `${name}_out.json`), "utf8"))
        .uefi_event_logs as Recorded[];
      expect(log.algorithms).toEqual([{ id: 0xc, size: 48 }]);
      expect(log.events.length).toBe(recorded.length);
      log.events.forEach((e, i) => {
        const r = recorded[i]!;
        expect(e.index).toBe(r.index);
        expect(Buffer.from(e.data).toString("base64")).toBe(r.event);
        expect(r.digests.map((d) => [d.alg, d.digest])).toEqual(Object.entries(e.digests));
        if (e.type === EV_EFI_BOOT_SERVICES_APPLICATION && r.details.device_paths) {
          const files = r.details.device_paths
            .filter((p) => p.startsWith("File("))
            .map((p) => p.slice(5, -1));
          expect(imageLoadFilePaths(e)).toEqual(files);
        }
        if (e.type === EV_IPL) expect(eventText(e)).toBe(r.details.string!);
      });
    });
  }

  test("Alibaba Cloud GRUB: the kernel command line event hashes as predicted", () => {
    const log = parseEventLog(readFileSync(join(DIR, "CCEL_AAEL_alibabacloud")), "alibabacloud");
    const texts = log.events.filter((e) => e.type === EV_IPL).map((e) => ({ e, text: eventText(e) }));
    const linux = texts.find((t) => t.text.startsWith("grub_cmd linux "))!;
    const cmdline = texts.find((t) => t.text.startsWith("grub_kernel_cmdline "))!;
    // Feed the entry GRUB ran back through our grub.cfg reader, as a never-booted image would have it.
    const grubCfg = `set default="0"\nmenuentry 'Alinux' {\n\t${linux.text.slice("grub_cmd ".length)}\n}\n`;
    const entry = resolveBootEntry({
      boot: emptyTree,
      grubCfg: { text: grubCfg, where: "grub.cfg" },
      env: {},
      root: "hd0,gpt3",
    });
    const measured = loaderCmdline(entry.linux);
    expect(`grub_kernel_cmdline ${measured}`).toBe(cmdline.text);
    expect(hashHex("sha384", new TextEncoder().encode(measured))).toBe(cmdline.e.digests["SHA-384"]!);
    expect(cmdline.e.digests["SHA-384"]).toBe(
      "6a3d314eb16073a6c426173723c0a57a1e5c4efe9b355730d2c80be1026f8d03493355c5077c81f69fa05571406b96f8",
    );
    // GRUB's grub_cmd events, by contrast, hash the text plus its NUL (reference-values.md §1.6).
    expect(hashHex("sha384", new TextEncoder().encode(`${linux.text.slice("grub_cmd ".length)}\0`))).toBe(
      linux.e.digests["SHA-384"]!,
    );
  });

  test("AAEL events hash the whole tagged event", () => {
    const log = parseEventLog(readFileSync(join(DIR, "CCEL_AAEL_alibabacloud")), "alibabacloud");
    const aael = log.events.filter((e) => e.type === EV_EVENT_TAG && taggedEvent(e).id === 0x4141454c);
    expect(aael.length).toBe(2);
    for (const e of aael) expect(hashHex("sha384", e.data)).toBe(e.digests["SHA-384"]!);
  });
});

test("garbage is one clear error", () => {
  expect(() => parseEventLog(new Uint8Array(100), "junk.bin")).toThrow(
    /junk.bin: not a valid TCG crypto-agile event log/,
  );
});
