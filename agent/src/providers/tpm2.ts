/**
 * tpm2: the volume key sealed to this machine's TPM under a PCR policy (optionally with a PIN),
 * kept as a "cryptpilot-tpm2" token in the volume's own LUKS2 header.
 *
 * - Enrolled volumes (rootfs, or any volume after `cryptpilot-fde tpm2 enroll`): read the token
 *   and unseal through a salted, encrypted policy session.
 * - A fresh volume whose device exists without a LUKS header (delta on first boot, a new data
 *   volume): generate a random key, seal it to the current PCRs, and store the token once the
 *   boot code has formatted the volume (afterFormat).
 */
import { existsSync } from "node:fs";
import { run } from "../command.ts";
import type { Tpm2Config } from "../config/providers.ts";
import { FdeError, KeyProviderError } from "../errors.ts";
import { log } from "../log.ts";
import { withTpm } from "../tpm/esys.ts";
import { type SealedKey, sealKey, unsealKey } from "../tpm/seal.ts";
import { resolveTcti } from "../tpm/tcti.ts";
import { findTokens, sealedFromToken, storeToken, TOKEN_TYPE, tokenFromSealed } from "../tpm/token.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

/** Size of a key generated for a fresh volume. */
const NEW_KEY_BYTES = 32;

async function hasLuksHeader(device: string): Promise<boolean> {
  if (!existsSync(device)) {
    throw new FdeError(`the volume's device ${device} does not exist`, {
      hint: "the token is read from the volume's LUKS2 header; check the device path (ProviderContext.device)",
    });
  }
  const { code } = await run("cryptsetup", ["isLuks", device], { okCodes: [0, 1] });
  return code === 0;
}

export function create(config: Tpm2Config, ctx: ProviderContext): KeyProvider {
  const device = ctx.device ?? `/dev/cryptpilot/${ctx.volume}`;
  const policy = { bank: config.pcrBank, pcrs: config.pcrs, pin: config.pin };
  // A key generated for a fresh volume, with its sealed copy, until afterFormat stores it.
  let pending: { key: Uint8Array; sealed: SealedKey } | undefined;

  const fail = (err: unknown): KeyProviderError => {
    if (err instanceof KeyProviderError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new KeyProviderError("tpm2", `volume ${ctx.volume} (${device}): ${message}`, {
      cause: err,
      hint: err instanceof FdeError ? err.hint : undefined,
    });
  };

  const tcti = resolveTcti(config.tcti);

  async function sealFresh(): Promise<Uint8Array> {
    if (!pending) {
      log.info(`tpm2: ${device} has no LUKS header yet: sealing a new key for volume ${ctx.volume}`);
      const key = crypto.getRandomValues(new Uint8Array(NEW_KEY_BYTES));
      pending = { key, sealed: await withTpm(tcti, (esys) => sealKey(esys, key, policy)) };
    }
    return pending.key.slice();
  }

  async function unsealEnrolled(): Promise<Uint8Array> {
    const tokens = await findTokens(device);
    const newest = tokens.at(-1);
    if (!newest) {
      throw new FdeError(`the LUKS2 header has no ${TOKEN_TYPE} token`, {
        hint: `enroll the volume first: cryptpilot-fde tpm2 enroll --volume ${ctx.volume} --device ${device} < key`,
      });
    }
    const sealed = sealedFromToken(newest.token, `${device} token ${newest.id}`);
    return withTpm(tcti, (esys) => unsealKey(esys, sealed, config.pin));
  }

  return {
    name: "tpm2",
    temporary: false,
    describe: () =>
      `tpm2 PCRs ${config.pcrBank}:${config.pcrs.join(",")}${config.pin === undefined ? "" : " + PIN"}, token in ${device}`,
    async getKey() {
      try {
        if (await hasLuksHeader(device)) return await unsealEnrolled();
        // The rootfs is converted with its key on the build host, never formatted at boot.
        if (ctx.volume === "rootfs") throw new FdeError(`${device} is not a LUKS2 volume`);
        return await sealFresh();
      } catch (err) {
        throw fail(err);
      }
    },
    async afterFormat(formatted: string) {
      if (!pending) return;
      try {
        const id = await storeToken(formatted, tokenFromSealed(pending.sealed, undefined));
        log.info(`tpm2: stored the sealed key of volume ${ctx.volume} as LUKS2 token ${id} of ${formatted}`);
        pending.key.fill(0);
        pending = undefined;
      } catch (err) {
        throw fail(err);
      }
    },
  };
}
