/**
 * Cost of getting the boot keys from a key broker with remote attestation (RCAR: auth, attest,
 * resource, JWE decryption) against the test broker on loopback, next to a plain GET to the same
 * server: the part above the baseline is the protocol and its cryptography, not the network.
 */

import { clearKbsSessions, getKbsResource, type KbsClientConfig } from "../agent/src/kbs/client.ts";
import { DEFAULT_RETRY } from "../agent/src/kbs/http.ts";
import { startBroker } from "../vm-test/kbs/broker.ts";
import { type Benchmark, median } from "./lib.ts";

const benchmark: Benchmark = {
  title: "KBS key retrieval (RCAR handshake)",
  description:
    "In-process client against `vm-test/kbs` on 127.0.0.1 with sample evidence (no TEE hardware time). Baseline: a plain HTTP GET to the same server, and for round trips the two GETs an unauthenticated key server would need for rootfs + delta.",
  async run(ctx) {
    const broker = await startBroker({
      resources: {
        "default/key/rootfs": crypto.getRandomValues(new Uint8Array(32)),
        "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    try {
      const cfg: KbsClientConfig = { url: broker.url, tee: "sample", retry: DEFAULT_RETRY };
      const plain: number[] = [];
      const handshake: number[] = [];
      const boot: number[] = [];
      let requests = 0;
      cfg.onRequest = () => requests++;
      ctx.log(`timing ${ctx.runs} runs each`);
      for (let i = -2; i < ctx.runs; i++) {
        let t = performance.now();
        await (await fetch(`${broker.url}/healthz`)).text();
        const plainMs = performance.now() - t;

        clearKbsSessions();
        t = performance.now();
        await getKbsResource(cfg, "default/key/rootfs");
        const handshakeMs = performance.now() - t;

        clearKbsSessions();
        requests = 0;
        t = performance.now();
        await Promise.all([
          getKbsResource(cfg, "default/key/rootfs"),
          getKbsResource(cfg, "default/key/delta"),
        ]);
        const bootMs = performance.now() - t;
        if (i >= 0) {
          plain.push(plainMs);
          handshake.push(handshakeMs);
          boot.push(bootMs);
        }
      }
      const baseline = { name: "plain GET", value: median(plain) };
      return [
        {
          name: `one key, fresh session (median of ${ctx.runs})`,
          value: median(handshake),
          unit: "ms",
          baseline,
        },
        {
          name: `rootfs + delta keys, one boot (median of ${ctx.runs})`,
          value: median(boot),
          unit: "ms",
          baseline,
          note: "both keys requested concurrently; the second reuses the first's attestation",
        },
        {
          name: "HTTP round trips per boot",
          value: requests,
          unit: "requests",
          baseline: { name: "one GET per key", value: 2 },
          note: "auth + attest once, then one resource GET per key (without session reuse: 6)",
        },
      ];
    } finally {
      await broker.stop();
    }
  },
};

export default benchmark;
