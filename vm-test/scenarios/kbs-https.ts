import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBroker } from "../kbs/broker.ts";
import { makeTestPki } from "../kbs/tls.ts";
import { defineScenario } from "../lib/scenario.ts";
import { freePort, kbsFdeToml } from "./kbs-http.ts";

// rootfs and delta keys from the test key broker over HTTPS, trust pinned with kbs_root_cert to
// the broker's own CA (the guest has no other way to trust it).

const ROOTFS_KEY = "kbs-vm-rootfs-key-tls";

export default defineScenario({
  description: "kbs over HTTPS with kbs_root_cert pinning the broker's CA",
  timeoutSec: 1200,
  async run(ctx) {
    const pki = makeTestPki(mkdtempSync(join(tmpdir(), "kbs-pki-")));
    const port = await freePort();
    const pin = `kbs_root_cert = """\n${pki.caPem}"""\n`;
    const disk = await ctx.convert({
      fde: kbsFdeToml(`https://10.0.2.2:${port}`, pin),
      rootfsKey: ROOTFS_KEY,
    });
    const broker = await startBroker({
      port,
      tls: { cert: pki.certPem, key: pki.keyPem },
      resources: {
        "default/key/rootfs": new TextEncoder().encode(ROOTFS_KEY),
        "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    try {
      const boot = await ctx.boot(disk, { label: "kbs-https", network: true });
      ctx.expectReported(boot);
      ctx.check(
        broker.stats.attestations === 1 && broker.stats.resource === 2,
        `broker saw ${JSON.stringify(broker.stats)}`,
        boot,
      );
    } finally {
      await broker.stop();
    }
  },
});
