/**
 * Cost of unsealing a TPM2-sealed volume key:
 * - on the host: the tpm2 provider's getKey (read the LUKS2 token, derive the SRK, load, salted +
 *   encrypted policy session, PolicyPCR, Unseal, all in-process through ESAPI) against the same
 *   unseal done the way shell-based unlockers (clevis' tpm2 pin) do it, with one tpm2-tools
 *   process per TPM command and no parameter encryption;
 * - in a QEMU guest with a swtpm TPM (vm-test/scenarios/tpm2-bench.ts): a whole unlock with
 *   `cryptpilot-fde volume open` against `systemd-cryptsetup attach ... tpm2-device=auto`, one
 *   LUKS2 volume enrolled both ways. BENCH_TPM2_VM=0 skips the guest (it takes minutes).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "../agent/src/providers/tpm2.ts";
import { withTpm } from "../agent/src/tpm/esys.ts";
import { sealKey, splitBlob } from "../agent/src/tpm/seal.ts";
import { storeToken, tokenFromSealed } from "../agent/src/tpm/token.ts";
import { startSwtpm } from "../agent/testkit/swtpm.ts";
import { Markers } from "../vm-test/lib/markers.ts";
import { BENCH_RUNS, benchRuns } from "../vm-test/scenarios/tpm2-bench.ts";
import { type BenchContext, type Benchmark, type Measurement, median } from "./lib.ts";

const SRK =
  "-C o -g sha256 -G ecc256:null:aes128cfb -a 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda'";

function sh(script: string, env: Record<string, string>, cwd: string): void {
  const r = Bun.spawnSync(["sh", "-c", script], {
    env: { ...process.env, ...env },
    cwd,
    stdout: "ignore",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`${script}: ${r.stderr.toString().trim()}`);
}

/**
 * provider.getKey against a tpm2-tools pipeline, both on a host swtpm; then getKey once more with
 * the SRK persisted at 0x81000001 (as systemd 254+ leaves it) against the derived SRK.
 */
async function hostMeasurements(ctx: BenchContext): Promise<Measurement[]> {
  const tpm = await startSwtpm();
  try {
    const image = join(ctx.tmp, "volume.img");
    const key = crypto.getRandomValues(new Uint8Array(32));
    sh(`truncate -s 20M ${image}`, {}, ctx.tmp);
    writeFileSync(join(ctx.tmp, "key"), key);
    sh(
      `cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file key ${image}`,
      {},
      ctx.tmp,
    );
    const sealed = await withTpm(tpm.tcti, (esys) => sealKey(esys, key, { bank: "sha256", pcrs: [7] }));
    await storeToken(image, tokenFromSealed(sealed, 0));
    const { privateBlob, publicBlob } = splitBlob(sealed.blob);
    writeFileSync(join(ctx.tmp, "obj.priv"), privateBlob);
    writeFileSync(join(ctx.tmp, "obj.pub"), publicBlob);
    const pipeline = [
      `tpm2_createprimary ${SRK} -c srk.ctx`,
      "tpm2_load -C srk.ctx -u obj.pub -r obj.priv -c obj.ctx",
      "tpm2_flushcontext -t",
      "tpm2_startauthsession --policy-session -S s.ctx",
      "tpm2_policypcr -S s.ctx -l sha256:7",
      "tpm2_unseal -c obj.ctx -p session:s.ctx -o out.key",
      "tpm2_flushcontext -t",
      "tpm2_flushcontext -s",
    ].join(" && ");
    const provider = create(
      { type: "tpm2", pcrs: [7], pcrBank: "sha256", tcti: tpm.tcti },
      { volume: "bench", configDir: ctx.tmp, device: image, freshKey: "never" },
    );
    const ours: number[] = [];
    const tools: number[] = [];
    ctx.log(`timing ${ctx.runs} runs each`);
    for (let i = -2; i < ctx.runs; i++) {
      let t = performance.now();
      const got = await provider.getKey();
      const oursMs = performance.now() - t;
      if (Buffer.compare(Buffer.from(got), Buffer.from(key)) !== 0) throw new Error("unsealed the wrong key");
      t = performance.now();
      sh(pipeline, tpm.env, ctx.tmp);
      const toolsMs = performance.now() - t;
      if (i >= 0) {
        ours.push(oursMs);
        tools.push(toolsMs);
      }
    }
    sh(
      `tpm2_createprimary ${SRK} -c srk.ctx && tpm2_evictcontrol -C o -c srk.ctx 0x81000001`,
      tpm.env,
      ctx.tmp,
    );
    sh("tpm2_flushcontext -t", tpm.env, ctx.tmp);
    const persisted: number[] = [];
    for (let i = -2; i < ctx.runs; i++) {
      const t = performance.now();
      const got = await provider.getKey();
      if (i >= 0) persisted.push(performance.now() - t);
      if (Buffer.compare(Buffer.from(got), Buffer.from(key)) !== 0) throw new Error("unsealed the wrong key");
    }
    return [
      {
        name: `getKey: token + unseal (median of ${ctx.runs})`,
        value: median(ours),
        unit: "ms",
        baseline: { name: "tpm2-tools pipeline", value: median(tools) },
        note: "ours includes reading the token from the LUKS2 header (in-process, checksum-verified) and a salted session with response encryption; the pipeline starts from key files and sends the key in clear",
      },
      {
        name: `getKey with the SRK persisted at 0x81000001 (median of ${ctx.runs})`,
        value: median(persisted),
        unit: "ms",
        baseline: { name: "getKey deriving the SRK (CreatePrimary)", value: median(ours) },
        note: "swtpm derives an ECC primary in about a millisecond; a hardware TPM takes tens of ms, which the persistent SRK saves",
      },
    ];
  } finally {
    await tpm.stop();
  }
}

const ms = (value: number) => `${Math.round(value)} ms`;

/** Runs the guest benchmark scenario and reads its timings from the guest's console. */
async function vmMeasurement(ctx: BenchContext): Promise<Measurement> {
  ctx.log("booting the tpm2-bench guest (vm-test/run tpm2-bench; minutes under TCG)");
  const proc = Bun.spawn([join(ctx.root, "vm-test", "run"), "tpm2-bench"], {
    cwd: ctx.root,
    stdout: "pipe",
    stderr: "inherit",
  });
  const output = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0 || !/^PASS tpm2-bench/m.test(output)) {
    throw new Error(`vm-test/run tpm2-bench did not pass:\n${output.trim()}`);
  }
  const outDir = join(ctx.root, "vm-test", "out", "tpm2-bench");
  const log = readdirSync(outDir).find((f) => /^serial-\d+-bench\.log$/.test(f));
  if (!log) throw new Error(`no serial log of the bench boot in ${outDir}`);
  const runs = benchRuns(new Markers(readFileSync(join(outDir, log), "latin1")));
  return {
    name: `guest unlock: \`cryptpilot-fde volume open\` (median of ${runs.length})`,
    value: median(runs.map((r) => r.ours)),
    unit: "ms",
    baseline: {
      name: "`systemd-cryptsetup attach` tpm2-device=auto",
      value: median(runs.map((r) => r.systemd)),
    },
    note: `QEMU TCG guest (Debian 12, systemd 252) with a swtpm TPM, one LUKS2 volume with both a cryptpilot-tpm2 token (\`cryptpilot-fde tpm2 enroll --pcrs 7\`) and a systemd-tpm2 token (\`systemd-cryptenroll --tpm2-pcrs=7\`), pbkdf2 keyslots; ${BENCH_RUNS} alternating unlocks after a warm-up, each ending with /dev/mapper/NAME open. Ours is the Bun executable (its start alone, \`--version\`: ${ms(median(runs.map((r) => r.start)))}) reading the token from the LUKS2 header itself (the \`cryptsetup luksDump\` it spawned before takes ${ms(median(runs.map((r) => r.dump)))}), unsealing in-process, and spawning cryptsetup once (open, which alone takes ${ms(median(runs.map((r) => r.plain)))} with the key file); systemd-cryptsetup is one C process with libcryptsetup in-process`,
  };
}

const benchmark: Benchmark = {
  title: "TPM2 unseal of a volume key",
  description:
    "Host: swtpm over TCP on the same host, key sealed to PCR 7 (sha256) in a LUKS2 image's header; baseline: the same unseal as a tpm2-tools pipeline (createprimary, load, startauthsession, policypcr, unseal), as clevis' tpm2 pin runs it. Guest: a whole volume unlock in a QEMU guest with a swtpm TPM (`vm-test/scenarios/tpm2-bench.ts`); baseline: systemd-cryptsetup with a systemd-cryptenroll TPM2 token on the same volume.",
  async run(ctx) {
    const host = await hostMeasurements(ctx);
    if (process.env.BENCH_TPM2_VM === "0") return host;
    return [...host, await vmMeasurement(ctx)];
  },
};

export default benchmark;
