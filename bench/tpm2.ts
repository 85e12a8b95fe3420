/**
 * Cost of unsealing a TPM2-sealed volume key: the tpm2 provider's getKey (read the LUKS2 token,
 * derive the SRK, load, salted + encrypted policy session, PolicyPCR, Unseal, all in-process
 * through ESAPI) against the same unseal done the way shell-based unlockers (clevis' tpm2 pin)
 * do it, with one tpm2-tools process per TPM command and no parameter encryption.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "../agent/src/providers/tpm2.ts";
import { withTpm } from "../agent/src/tpm/esys.ts";
import { sealKey, splitBlob } from "../agent/src/tpm/seal.ts";
import { storeToken, tokenFromSealed } from "../agent/src/tpm/token.ts";
import { startSwtpm } from "../agent/test/tpm/swtpm.ts";
import { type Benchmark, median } from "./lib.ts";

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

const benchmark: Benchmark = {
  title: "TPM2 unseal of a volume key",
  description:
    "swtpm over TCP on the same host, key sealed to PCR 7 (sha256) in a LUKS2 image's header. Baseline: the same unseal as a tpm2-tools pipeline (createprimary, load, startauthsession, policypcr, unseal), as clevis' tpm2 pin runs it.",
  async run(ctx) {
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
        { volume: "bench", configDir: ctx.tmp, device: image },
      );
      const ours: number[] = [];
      const tools: number[] = [];
      ctx.log(`timing ${ctx.runs} runs each`);
      for (let i = -2; i < ctx.runs; i++) {
        let t = performance.now();
        const got = await provider.getKey();
        const oursMs = performance.now() - t;
        if (Buffer.compare(Buffer.from(got), Buffer.from(key)) !== 0)
          throw new Error("unsealed the wrong key");
        t = performance.now();
        sh(pipeline, tpm.env, ctx.tmp);
        const toolsMs = performance.now() - t;
        if (i >= 0) {
          ours.push(oursMs);
          tools.push(toolsMs);
        }
      }
      return [
        {
          name: `getKey: token + unseal (median of ${ctx.runs})`,
          value: median(ours),
          unit: "ms",
          baseline: { name: "tpm2-tools pipeline", value: median(tools) },
          note: "ours includes reading the token (one `cryptsetup luksDump`) and a salted session with response encryption; the pipeline starts from key files and sends the key in clear",
        },
      ];
    } finally {
      await tpm.stop();
    }
  },
};

export default benchmark;
