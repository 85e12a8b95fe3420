import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startSwtpm as startTcpSwtpm, withSwtpm } from "../../agent/testkit/swtpm.ts";
import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import type { FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

// Both volume keys sealed to the guest's (swtpm) TPM by the tpm2 provider. The rootfs is sealed
// at convert time (convert --tpm2-enroll through a TCP swtpm over the state directory the guest's
// vTPM then uses): keyslot 0 keeps the recovery passphrase (argon2id), keyslot 1 the sealed random
// key, which the boot opens alone (--key-slot 1 from the token). (1) The first boot unseals the
// rootfs, seals a new delta key to PCR 7 in the initrd and stores the token in the delta's LUKS2
// header; (2) the next boot extends PCR 7 in the initrd before the agent runs: the rootfs still
// unseals, the delta does not and the boot stops with the PCR policy mismatch naming PCR 7;
// (3) a boot without the extend unseals again and the persistent delta still holds boot 1's data.

const fde: FdeOptions = { deltaLocation: "disk-persist", deltaBackend: "dm-snapshot", encryptRootfs: true };
/** Short: a passphrase, so convert gives its keyslot cryptsetup's argon2id. */
const RECOVERY_PASSPHRASE = "recovery-9f1c";
const FDE_TOML = [
  "[rootfs]",
  'delta_location = "disk-persist"',
  'delta_backend = "dm-snapshot"',
  "",
  // PCR 16 (debug) is zero after TPM2_Startup and nothing on this boot path extends it (SeaBIOS
  // and the direct kernel boot measure into 0-7 only, no IMA, no UKI): the same at convert time
  // on the fresh TCP swtpm as at every guest boot. PCR 7 is not: SeaBIOS extends it.
  "[rootfs.encrypt.tpm2]",
  "pcrs = [16]",
  "",
  "[delta]",
  "integrity = false",
  "",
  "[delta.encrypt.tpm2]",
  "pcrs = [7]",
  "",
].join("\n");

/** TPM2_PCR_Extend(PCR 7, sha256 digest 32 x 0x42) with an empty password session: raw command bytes. */
function pcr7ExtendCommand(): Buffer {
  const body = Buffer.concat([
    Buffer.from("00000007", "hex"), // pcrHandle
    Buffer.from("00000009" + "40000009" + "0000" + "00" + "0000", "hex"), // TPM_RS_PW, empty auth
    Buffer.from("00000001" + "000b", "hex"), // one digest, TPM_ALG_SHA256
    Buffer.alloc(32, 0x42),
  ]);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(0x8002, 0); // TPM_ST_SESSIONS
  head.writeUInt32BE(10 + body.length, 2);
  head.writeUInt32BE(0x00000182, 6); // TPM_CC_PCR_Extend
  return Buffer.concat([head, body]);
}

// The initrd has no tpm2-tools: the command goes to /dev/tpmrm0 as bytes (one write), and the
// response is printed so the scenario can tell that the extend really happened. /dev/tpmrm0
// appears when udev has loaded tpm_tis, which may be after this unit starts.
const EXTEND_SCRIPT = `
i=0
while [ ! -e /dev/tpmrm0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
exec 3<>/dev/tpmrm0
echo ${pcr7ExtendCommand().toString("base64")} | base64 -d >&3
echo "cptest: PCR 7 extend response $(head -c 64 <&3 | base64 -w0)"
`;

/**
 * initrd files for a boot that extends PCR 7 before the agent unseals. The appended cpio can only
 * add files to existing directories, so the unit itself is replaced with one that runs the
 * extend as ExecStartPre.
 */
function pcr7ExtendFiles(repo: string): Record<string, string> {
  const unit = readFileSync(join(repo, "hooks", "cryptpilot-fde-before-sysroot.service"), "utf8");
  if (!unit.includes("\n[Service]\n"))
    throw new Error("hooks/cryptpilot-fde-before-sysroot.service has no [Service]");
  return {
    "/etc/cptest-pcr7-extend.sh": EXTEND_SCRIPT,
    "/usr/lib/systemd/system/cryptpilot-fde-before-sysroot.service": unit.replace(
      "\n[Service]\n",
      "\n[Service]\nExecStartPre=/bin/sh /etc/cptest-pcr7-extend.sh\n",
    ),
  };
}

/**
 * initrd files for a boot with the agent's debug log, which shows every command line it runs
 * (keys go on stdin, never in them): the check that the volumes are opened with --key-slot.
 */
function verboseFiles(repo: string): Record<string, string> {
  const unit = readFileSync(join(repo, "hooks", "cryptpilot-fde-before-sysroot.service"), "utf8");
  const exec = "ExecStart=/usr/bin/cryptpilot-fde boot-service";
  if (!unit.includes(exec)) throw new Error(`hooks/cryptpilot-fde-before-sysroot.service has no "${exec}"`);
  return {
    "/usr/lib/systemd/system/cryptpilot-fde-before-sysroot.service": unit.replace(
      exec,
      "ExecStart=/usr/bin/cryptpilot-fde --verbose boot-service",
    ),
  };
}

export default defineScenario({
  description:
    "tpm2 provider with a swtpm TPM: delta key sealed on first boot; PCR 7 extended -> boot stops naming the PCR policy mismatch; unsealed again without the extend",
  skip: () => (Bun.which("swtpm") ? undefined : "swtpm is not installed"),
  timeoutSec: 3600,
  async run(ctx) {
    const stateDir = join(ctx.outDir, "tpm-state");
    const convertTpm = await startTcpSwtpm({ stateDir });
    let disk: string;
    try {
      disk = await ctx.convert({
        fde: FDE_TOML,
        rootfsKey: RECOVERY_PASSPHRASE,
        args: ["--tpm2-enroll", "--tpm2-tcti", convertTpm.tcti],
      });
    } finally {
      await convertTpm.stop();
    }

    // One swtpm per boot over the same state: PCRs reset at every boot, the sealing keys stay.
    const bootWithTpm = (label: string, initrdFiles?: Record<string, string>) =>
      withSwtpm(stateDir, join(ctx.outDir, `swtpm-${label}.sock`), (tpm) =>
        ctx.boot(disk, {
          label,
          quick: true,
          timeoutSec: 1200,
          extraQemuArgs: tpm.qemuArgs,
          initrdFiles,
        }),
      );

    const first = await bootWithTpm("seal");
    expectFdeRoot(ctx, first, fde);
    ctx.check(
      /tpm2: unsealed cryptpilot-tpm2 token \d+ of \/dev\/mapper\/cryptpilot-rootfs \(keyslot 1\)/.test(
        first.serial,
      ),
      "the rootfs key sealed by convert was not unsealed for keyslot 1",
      first,
    );
    const rootfsStep = /unlocking the encrypted rootfs \.\.\. done in ([\d.]+) s/.exec(first.serial)?.[1];
    ctx.log(`rootfs unlocked (TPM unseal + cryptsetup open --key-slot 1) in ${rootfsStep ?? "?"} s`);
    ctx.check(
      /sealing a new key for volume delta/.test(first.serial) &&
        /stored the sealed key of volume delta/.test(first.serial),
      "the first boot did not seal the delta key and store the token",
      first,
    );

    const extended = await bootWithTpm("pcr7-extended", pcr7ExtendFiles(ctx.repo));
    const response = /cptest: PCR 7 extend response (\S+)/.exec(extended.serial)?.[1];
    // TPM response header: tag (2), size (4), response code (4) = TPM_RC_SUCCESS.
    const rc = response ? Buffer.from(response, "base64").subarray(6, 10).toString("hex") : undefined;
    ctx.check(
      rc === "00000000",
      `PCR 7 was not extended in the initrd (response ${response ?? "missing"})`,
      extended,
    );
    ctx.expectStopped(
      extended,
      /TPM PCR policy mismatch.*PCR 7 is [0-9a-f]{64} \(sealed to [0-9a-f]{64}\)/,
      "the PCR 7 policy mismatch",
    );

    const again = await bootWithTpm("unseal", verboseFiles(ctx.repo));
    expectFdeRoot(ctx, again, fde);
    // Each volume is opened with the keyslot its token names only: no KDF run for keyslot 0's
    // argon2id recovery passphrase in front of the rootfs's sealed key; and from the checked
    // private copy of its header (--header, disk/luks2-header.ts), never the header on the disk.
    for (const [device, slot] of [
      ["/dev/mapper/cryptpilot-rootfs", 1],
      ["/dev/mapper/cryptpilot-delta", 0],
    ] as const) {
      const open = new RegExp(
        `running: cryptsetup open --type luks2 [^\\n]*--header /run/cryptpilot/\\S+ --key-slot ${slot} --key-file=- ${device} \\S+\\s[\\s\\S]*?finished: cryptsetup open \\(exit 0\\) in (\\d+) ms`,
      ).exec(again.serial);
      ctx.check(
        open !== null,
        `${device} was not opened from a private header copy with --key-slot ${slot}`,
        again,
      );
      ctx.log(`${device}: cryptsetup open --key-slot ${slot} took ${open![1]} ms`);
    }
    expectPersistence(ctx, first, again, fde);
  },
});
