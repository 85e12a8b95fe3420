import { join } from "node:path";
import { withSwtpm } from "../../agent/testkit/swtpm.ts";
import { type FdeOptions, fdeToml } from "../lib/fde.ts";
import type { Markers } from "../lib/markers.ts";
import { defineScenario } from "../lib/scenario.ts";

// TPM2 unlock benchmark for bench/tpm2.ts (`make bench`), on one guest with a swtpm TPM. The
// booted guest formats one LUKS2 volume, enrolls it both ways (`cryptpilot-fde tpm2 enroll` and
// `systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs=7`, both sealing to PCR 7), then unlocks it
// alternately with `cryptpilot-fde volume open` (the tpm2 provider reads its token, unseals and
// runs cryptsetup) and `systemd-cryptsetup attach ... tpm2-device=auto`, the same binaries the
// initrd carries. Timings go to the console as CPTEST:check:tpm2-bench-run=<ours> <systemd> <start>
// <plain> <dump> (ms; see BenchRun).

/** Timed unlocks per tool (after one untimed warm-up). */
export const BENCH_RUNS = 5;

const fde: FdeOptions = { deltaLocation: "ram", deltaBackend: "overlayfs", encryptRootfs: false };

// Runs in the booted guest from cptest-report's checks.d (bash; every output line becomes a
// CPTEST:check: marker). Key and PCR choices match for both unlockers: a 32-byte random key
// (base64 text, so systemd-cryptenroll can take it in $PASSWORD), pbkdf2 with 1000 iterations for
// every keyslot (systemd-cryptenroll does the same for its TPM2 slot), PCR 7 in the sha256 bank.
const GUEST_SCRIPT = `#!/bin/bash
set -uo pipefail
runs=${BENCH_RUNS}
work=/run/tpm2-bench
fail() { echo "tpm2-bench-error=$1: $(tr '\\n' ' ' <"$work/err" 2>/dev/null)"; exit 0; }
for _ in $(seq 300); do [ -e /dev/tpmrm0 ] && break; sleep 0.1; done
[ -e /dev/tpmrm0 ] || { echo "tpm2-bench-error=no /dev/tpmrm0"; exit 0; }
mkdir -p "$work/cfg/volumes"
truncate -s 64M "$work/volume.img"
dev=$(losetup -f --show "$work/volume.img") || fail losetup
head -c 32 /dev/urandom | base64 -w0 >"$work/key"
cryptsetup luksFormat -q --type luks2 --subsystem cryptpilot --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \\
  --key-file "$work/key" "$dev" 2>"$work/err" || fail luksFormat
cryptpilot-fde -c "$work/cfg" tpm2 enroll --volume delta --device "$dev" --key-file "$work/key" --pcrs 7 \\
  >/dev/null 2>"$work/err" || fail "cryptpilot-fde tpm2 enroll"
PASSWORD=$(cat "$work/key") systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs=7 "$dev" \\
  >/dev/null 2>"$work/err" || fail systemd-cryptenroll
echo "tpm2-bench-tokens=$(cryptsetup luksDump --dump-json-metadata "$dev" | grep -o '"type":"[a-z0-9-]*tpm2"' | cut -d'"' -f4 | sort | paste -sd, -)"
printf 'volume = "tpm2bench"\\ndev = "%s"\\n\\n[encrypt.tpm2]\\npcrs = [7]\\n' "$dev" >"$work/cfg/volumes/bench.toml"
now() { date +%s%N; }
for i in $(seq 0 "$runs"); do
  t=$(now)
  cryptpilot-fde -c "$work/cfg" volume open tpm2bench >/dev/null 2>"$work/err" || fail "cryptpilot-fde volume open"
  ours=$(( ($(now) - t) / 1000000 ))
  [ -b /dev/mapper/tpm2bench ] || fail "no /dev/mapper/tpm2bench"
  cryptpilot-fde -c "$work/cfg" volume close tpm2bench >/dev/null 2>"$work/err" || fail "cryptpilot-fde volume close"
  t=$(now)
  /usr/lib/systemd/systemd-cryptsetup attach sdbench "$dev" - tpm2-device=auto,headless=1 \\
    >/dev/null 2>"$work/err" || fail "systemd-cryptsetup attach"
  theirs=$(( ($(now) - t) / 1000000 ))
  [ -b /dev/mapper/sdbench ] || fail "no /dev/mapper/sdbench"
  /usr/lib/systemd/systemd-cryptsetup detach sdbench 2>"$work/err" || fail "systemd-cryptsetup detach"
  # Parts of ours: starting the Bun executable at all, cryptsetup opening with the key, and the
  # luksDump that reads the token.
  t=$(now)
  cryptpilot-fde --version >/dev/null 2>"$work/err" || fail "cryptpilot-fde --version"
  start=$(( ($(now) - t) / 1000000 ))
  t=$(now)
  cryptsetup open --key-file "$work/key" "$dev" plainbench 2>"$work/err" || fail "cryptsetup open"
  plain=$(( ($(now) - t) / 1000000 ))
  cryptsetup close plainbench 2>"$work/err" || fail "cryptsetup close"
  t=$(now)
  cryptsetup luksDump --dump-json-metadata "$dev" >/dev/null 2>"$work/err" || fail "cryptsetup luksDump"
  dump=$(( ($(now) - t) / 1000000 ))
  [ "$i" -gt 0 ] && echo "tpm2-bench-run=$ours $theirs $start $plain $dump"
done
echo "tpm2-bench-done=$runs"
`;

/** One guest run, in ms. */
export interface BenchRun {
  /** cryptpilot-fde volume open (tpm2 provider) */
  ours: number;
  /** systemd-cryptsetup attach ... tpm2-device=auto */
  systemd: number;
  /** cryptpilot-fde --version: the Bun executable's start alone */
  start: number;
  /** cryptsetup open with the key file: the unlock without any TPM */
  plain: number;
  /** cryptsetup luksDump --dump-json-metadata: how the provider reads its token */
  dump: number;
}

export function benchRuns(markers: Markers): BenchRun[] {
  return markers.all("check:tpm2-bench-run").map((v) => {
    const [ours, systemd, start, plain, dump] = v.split(" ").map(Number);
    return {
      ours: ours ?? Number.NaN,
      systemd: systemd ?? Number.NaN,
      start: start ?? Number.NaN,
      plain: plain ?? Number.NaN,
      dump: dump ?? Number.NaN,
    };
  });
}

export default defineScenario({
  description:
    "TPM2 unlock timing for make bench: cryptpilot-fde tpm2 provider vs systemd-cryptsetup's TPM2 token, one volume enrolled both ways, swtpm guest",
  skip: () => (Bun.which("swtpm") ? undefined : "swtpm is not installed"),
  inAll: false,
  timeoutSec: 2400,
  async run(ctx) {
    const source = await ctx.sourceDisk({ files: { "/etc/cptest/checks.d/tpm2-bench.sh": GUEST_SCRIPT } });
    const disk = await ctx.convert({ source, fde: fdeToml(fde), rootfsKey: null });
    const boot = await withSwtpm(join(ctx.outDir, "tpm-state"), join(ctx.outDir, "swtpm.sock"), (tpm) =>
      ctx.boot(disk, { label: "bench", quick: true, timeoutSec: 1500, extraQemuArgs: tpm.qemuArgs }),
    );
    ctx.expectReported(boot);
    const error = boot.markers.get("check:tpm2-bench-error");
    ctx.check(error === undefined, `the guest benchmark failed: ${error}`, boot);
    ctx.check(
      boot.markers.get("check:tpm2-bench-tokens") === "cryptpilot-tpm2,systemd-tpm2",
      `the volume should carry both TPM2 tokens, has ${boot.markers.get("check:tpm2-bench-tokens")}`,
      boot,
    );
    const runs = benchRuns(boot.markers);
    ctx.check(
      runs.length === BENCH_RUNS && runs.every((r) => Object.values(r).every((ms) => ms > 0)),
      `expected ${BENCH_RUNS} timed runs, got ${JSON.stringify(runs)}`,
      boot,
    );
    ctx.log(
      `ms per run (cryptpilot-fde volume open / systemd-cryptsetup attach / cryptpilot-fde --version / cryptsetup open / luksDump): ${runs.map((r) => `${r.ours}/${r.systemd}/${r.start}/${r.plain}/${r.dump}`).join(" ")}`,
    );
  },
});
