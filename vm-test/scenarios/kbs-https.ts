import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withSwtpm } from "../../agent/testkit/swtpm.ts";
import { AFFINITY_COOKIE, startBroker } from "../kbs/broker.ts";
import { makeTestPki } from "../kbs/tls.ts";
import { freePort } from "../lib/net.ts";
import { defineScenario } from "../lib/scenario.ts";
import { startNtpServer } from "../ntp/server.ts";
import { kbsFdeToml } from "./kbs-http.ts";

// rootfs and delta keys from the test key broker over HTTPS, trust pinned with kbs_root_cert to
// the broker's own CA, with TPM evidence: the guest's (swtpm) TPM quotes the runtime-data digest
// in the initrd and the broker verifies the quotes with tpm2_checkquote before releasing keys.
// The same boot meets what real deployments do to a guest (issue #15): its clock starts in 2020
// (-rtc base=, so the broker's certificate is not yet valid until the stage syncs the clock by
// SNTP from global.toml's ntp_servers, a test server on the host), the broker answers the first
// two /attest with trustee's 401 for a transient verifier failure (the handshake restarts), and
// a load balancer in front of it routes by its own affinity cookie (every cookie is sent back).

const ROOTFS_KEY = "kbs-vm-rootfs-key-tls";

export default defineScenario({
  description:
    "kbs over HTTPS (kbs_root_cert pins the broker's CA) with TPM evidence checked by tpm2_checkquote; the guest clock starts in 2020 and is set by SNTP before the key fetch; two transient 401s at /attest restart the handshake; a load balancer's affinity cookie is sent back",
  skip: () =>
    Bun.which("swtpm") && Bun.which("tpm2_checkquote") ? undefined : "swtpm or tpm2-tools is not installed",
  timeoutSec: 1200,
  async run(ctx) {
    const pki = makeTestPki(mkdtempSync(join(tmpdir(), "kbs-pki-")));
    const port = await freePort();
    const ntp = await startNtpServer();
    const pin = `kbs_root_cert = """\n${pki.caPem}"""\n`;
    const fde = kbsFdeToml(`https://10.0.2.2:${port}`, pin).replaceAll('tee = "sample"', 'tee = "tpm"');
    const global = `[boot]\nntp_servers = ["10.0.2.2:${ntp.port}"]\n`;
    const disk = await ctx.convert({ fde, global, rootfsKey: ROOTFS_KEY });
    const broker = await startBroker({
      faults: { transient401Attest: 2, affinityCookie: AFFINITY_COOKIE },
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
          extraQemuArgs: [...tpm.qemuArgs, "-rtc", "base=2020-01-01T00:00:00"],
        }),
      );
      ctx.expectReported(boot);
      ctx.check(
        ntp.requests > 0 && /set the clock from 10\.0\.2\.2:\d+ to 20\d\d-/.test(boot.serial),
        `the stage did not set the clock from the host's SNTP server (${ntp.requests} requests)`,
        boot,
      );
      ctx.check(
        /attested to https:\/\/10\.0\.2\.2:\d+ as tpm/.test(boot.serial),
        "no TPM attestation on the console",
        boot,
      );
      // Three handshakes (two refused with 401, then attested); both keys in that one session,
      // which the affinity cookie kept on one replica.
      ctx.check(
        broker.stats.attestations === 1 && broker.stats.attest === 3 && broker.stats.resource === 2,
        `three /attest (two transient 401s), one attestation and two resource requests expected, broker saw ${JSON.stringify(broker.stats)}`,
        boot,
      );
    } finally {
      await broker.stop();
      await ntp.stop();
    }
  },
});
