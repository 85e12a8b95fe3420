/**
 * The VM scenarios' comparison (agent/testkit/eventlog.ts) on a TPM-style event log built here in the
 * crypto-agile format: it passes when every prediction is in the log and names what is missing
 * otherwise, so the VM check cannot pass vacuously.
 */
import { expect, test } from "bun:test";
import { parseEventLog } from "../../src/refvalue/eventlog.ts";
import { hashHex } from "../../src/refvalue/hash.ts";
import { compareWithEventLog, type Predicted } from "../../testkit/eventlog.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function u32(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
}

/** A crypto-agile log with SHA-256 (0xb) and SHA-384 (0xc) banks. */
function buildLog(
  events: { pcr: number; type: number; data: Uint8Array; digestOf: Uint8Array }[],
): Uint8Array {
  const spec = [
    ...enc("Spec ID Event03\0"),
    ...u32(0),
    0,
    2,
    0,
    2,
    ...u32(2),
    0x0b,
    0,
    32,
    0,
    0x0c,
    0,
    48,
    0,
    0,
  ];
  const out: number[] = [...u32(0), ...u32(3), ...new Array(20).fill(0), ...u32(spec.length), ...spec];
  for (const e of events) {
    out.push(...u32(e.pcr), ...u32(e.type), ...u32(2));
    out.push(0x0b, 0, ...Buffer.from(hashHex("sha256", e.digestOf), "hex"));
    out.push(0x0c, 0, ...Buffer.from(hashHex("sha384", e.digestOf), "hex"));
    out.push(...u32(e.data.length), ...e.data);
  }
  return new Uint8Array(out);
}

/** UEFI_IMAGE_LOAD_EVENT with a single File() device-path node. */
function imageLoad(path: string): Uint8Array {
  const name = [...path].flatMap((c) => [c.charCodeAt(0), 0]).concat([0, 0]);
  const node = [4, 4, (name.length + 4) & 0xff, (name.length + 4) >> 8, ...name, 0x7f, 0xff, 4, 0];
  return new Uint8Array([...new Array(24).fill(0), ...u32(node.length), 0, 0, 0, 0, ...node]);
}

const shim = enc("shim binary");
const grub = enc("grub binary");
const kernel = enc("kernel file");
const initrd = enc("initrd file");
const cmdline = "/boot/vmlinuz-6.1 root=/dev/mapper/rootfs ro";
const log = parseEventLog(
  buildLog([
    { pcr: 4, type: 0x80000003, data: imageLoad("\\EFI\\BOOT\\BOOTX64.EFI"), digestOf: shim },
    { pcr: 4, type: 0x80000003, data: imageLoad("\\EFI\\BOOT\\grubx64.efi"), digestOf: grub },
    { pcr: 9, type: 0xd, data: enc("/boot/vmlinuz-6.1\0"), digestOf: kernel },
    { pcr: 8, type: 0xd, data: enc(`kernel_cmdline: ${cmdline}\0`), digestOf: enc(cmdline) },
    { pcr: 9, type: 0xd, data: enc("/boot/initrd.img-6.1\0"), digestOf: initrd },
  ]),
  "synthetic log",
);

function predicted(): Predicted {
  const p: Predicted = {
    kernel_cmdline: [`grub_kernel_cmdline /vmlinuz-6.1 x`, `grub_kernel_cmdline ${cmdline}`],
  };
  for (const [algo, label] of [
    ["sha256", "SHA-256"],
    ["sha384", "SHA-384"],
  ] as const) {
    p[`measurement.kernel_cmdline.${label}`] = [
      hashHex(algo, enc("/vmlinuz-6.1 x")),
      hashHex(algo, enc(cmdline)),
    ];
    p[`measurement.kernel.${label}`] = [hashHex(algo, kernel)];
    p[`measurement.initrd.${label}`] = [hashHex(algo, initrd)];
    p[`measurement.grub.${label}`] = [hashHex(algo, grub)];
    p[`measurement.shim.${label}`] = [hashHex(algo, shim)];
  }
  return p;
}

test("every prediction found: no problems", () => {
  expect(compareWithEventLog(predicted(), log, "grub")).toEqual([]);
});

test("a wrong kernel digest, a swapped shim/GRUB and an unpredicted command line are each reported", () => {
  const p = predicted();
  p["measurement.kernel.SHA-384"] = [hashHex("sha384", enc("another kernel"))];
  expect(compareWithEventLog(p, log, "grub").join("\n")).toMatch(
    /measurement.kernel.SHA-384 .* is not the digest of any PCR 9/,
  );
  const swapped = predicted();
  swapped["measurement.shim.SHA-256"] = [hashHex("sha256", grub)];
  expect(compareWithEventLog(swapped, log, "grub").join("\n")).toMatch(/measurement.shim.SHA-256/);
  const noCmdline = predicted();
  noCmdline.kernel_cmdline = ["grub_kernel_cmdline /vmlinuz-6.1 x"];
  noCmdline["measurement.kernel_cmdline.SHA-256"] = [hashHex("sha256", enc("/vmlinuz-6.1 x"))];
  const problems = compareWithEventLog(noCmdline, log, "grub").join("\n");
  expect(problems).toMatch(
    /GRUB measured the command line "\/boot\/vmlinuz-6.1 root=\/dev\/mapper\/rootfs ro"/,
  );
  expect(problems).toMatch(/SHA-256 digest .* is not predicted/);
});

test("UKI: the image-load digest must equal measurement.uki", () => {
  const uki = {
    "measurement.uki.SHA-256": [hashHex("sha256", shim)],
    "measurement.uki.SHA-384": [hashHex("sha384", shim)],
  };
  expect(compareWithEventLog(uki, log, "uki")).toEqual([]);
  expect(compareWithEventLog({ ...uki, "measurement.uki.SHA-256": ["00"] }, log, "uki")).toHaveLength(1);
});
