import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBroker } from "../kbs/broker.ts";
import { makeTestPki } from "../kbs/tls.ts";
import { freePort } from "../lib/net.ts";
import { defineScenario } from "../lib/scenario.ts";
import { withSwtpm } from "../lib/swtpm.ts";
import { kbsFdeToml } from "./kbs-http.ts";

// rootfs and delta keys from the test key broker over HTTPS, trust pinned with kbs_root_cert to
// the broker's own CA, with TPM evidence: the guest's (swtpm) TPM quotes the runtime-data digest
// in the initrd and the broker verifies the quotes with tpm2_checkquote before releasing keys.

const ROOTFS_KEY = "kbs-vm-rootfs-key-tls";

export default defineScenario({
  description:
    "kbs over HTTPS (kbs_root_cert pins the broker's CA) with TPM evidence checked by tpm2_checkquote",
  skip: () =>
    Bun.which("swtpm") && Bun.which("tpm2_checkquote") ? undefined : "swtpm or tpm2-tools is not installed",
  timeoutSec: 1200,
  async run(ctx) {
    const pki = makeTestPki(mkdtempSync(join(tmpdir(), "kbs-pki-")));
    const port = await freePort();
    const pin = `kbs_root_cert = """\n${pki.caPem}"""\n`;
    const fde = kbsFdeToml(`https://10.0.2.2:${port}`, pin).replaceAll('tee = "sample"', 'tee = "tpm"');
    const disk = await ctx.convert({ fde, rootfsKey: ROOTFS_KEY });
    const broker = await startBroker({
      port,
      tls: { cert: pki.certPem, key: pki.keyPem },
      allowTees: ["tpm"],
      resources: {
        "default/key/rootfs": new TextEncoder().encode(ROOTFS_KEY),
        "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    try {
      const boot = await withSwtpm(join(ctx.outDir, "tpm-state"), join(ctx.outDir, "swtpm.sock"), (tpm) =>
        ctx.boot(disk, {
          label: "kbs-https-tpm",
          quick: true,
          network: true,
          extraQemuArgs: tpm.qemuArgs,
        }),
      );
      ctx.expectReported(boot);
      ctx.check(
        /attested to https:\/\/10\.0\.2\.2:\d+ as tpm/.test(boot.serial),
        "no TPM attestation on the console",
        boot,
      );
      ctx.check(
        broker.stats.attestations === 1 && broker.stats.resource === 2,
        `one attestation and two resource requests expected, broker saw ${JSON.stringify(broker.stats)}`,
        boot,
      );
    } finally {
      await broker.stop();
    }
  },
});
