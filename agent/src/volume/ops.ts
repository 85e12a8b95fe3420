/**
 * init / open / close of one data volume. Keys come from the volume's provider and go to
 * cryptsetup on stdin only; they are zeroed as soon as cryptsetup has them.
 */
import { closeSync, constants, openSync } from "node:fs";
import { run } from "../command.ts";
import type { VolumeConfig } from "../config/volume.ts";
import * as luks from "../disk/luks.ts";
import { type HeaderProfile, openChecked, readCheckedHeader } from "../disk/luks2-header.ts";
import { CommandError, FdeError } from "../errors.ts";
import { log } from "../log.ts";
import type { FreshKey, KeyProvider } from "../providers/provider.ts";
import { makeFs, mountVolume, unmountVolume } from "./fs.ts";
import { decideInit, mapperPath, otpOpenRefusal, persistentOpenRefusal, probeDevice } from "./state.ts";

/** freshKey: "allowed" for `volume init` (it formats the volume with the key) and `volume check` (see FreshKey). */
export async function providerFor(
  vol: VolumeConfig,
  configDir: string,
  freshKey: FreshKey,
): Promise<KeyProvider> {
  const { createProvider } = await import("../providers/index.ts");
  return createProvider(vol.encrypt, { volume: vol.volume, configDir, device: vol.dev, freshKey });
}

function volumeError(vol: VolumeConfig, message: string, hint?: string): FdeError {
  return new FdeError(`volume ${vol.volume}: ${message}`, hint === undefined ? {} : { hint });
}

/** A block device held by dm, mounted or swapped on cannot be opened O_EXCL (EBUSY). */
function assertNotInUse(vol: VolumeConfig): void {
  let fd: number;
  try {
    fd = openSync(vol.dev, constants.O_RDONLY | constants.O_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EBUSY") {
      throw volumeError(vol, `${vol.dev} is in use (mounted, swapped on or held by another mapping)`);
    }
    throw volumeError(vol, `cannot open ${vol.dev}: ${(err as Error).message}`);
  }
  closeSync(fd);
}

/**
 * luksFormat options of a volume. Integrity volumes are always wiped (no --integrity-no-wipe):
 * makefs and the filesystem may read sectors nobody wrote, which would fail their tag check.
 */
export const formatOptions = (
  vol: VolumeConfig,
  subsystem: string,
  randomKey: boolean,
): luks.LuksFormatOptions => ({
  integrity: vol.integrity,
  subsystem,
  randomKey,
});

/** The header a volume must have: what volume init writes, with the configured integrity. */
export const headerProfile = (vol: VolumeConfig): HeaderProfile => ({ integrity: vol.integrity });

/**
 * Open under a throw-away name, run makefs, close again (init of a persistent volume). The header
 * is checked although we just wrote it: the host can swap it between the format and this open.
 */
async function makeFsThroughTemporaryMapping(vol: VolumeConfig, key: Uint8Array): Promise<void> {
  const name = `cryptpilot-init-${vol.volume}`;
  await openChecked(vol.dev, name, key, { profile: headerProfile(vol) });
  try {
    await makeFs(vol.makefs!, mapperPath(name));
  } finally {
    await luks.close(name);
  }
}

export interface InitOptions {
  forceReinit: boolean;
}

/**
 * Format the volume as LUKS2 with its provider's key: marker "initializing", the provider's
 * afterFormat (tpm2 stores its sealed key), makefs, then marker "done". An interruption anywhere
 * leaves "initializing", which the next init retries without --force-reinit.
 */
export async function initVolume(
  vol: VolumeConfig,
  configDir: string,
  options: InitOptions,
): Promise<string> {
  const facts = await probeDevice(vol.volume, vol.dev);
  if (facts.opened) throw volumeError(vol, `it is open (${mapperPath(vol.volume)}); close it first`);
  if (!facts.devExists) throw volumeError(vol, `${vol.dev} does not exist`);
  if (facts.error !== undefined) throw volumeError(vol, `cannot inspect ${vol.dev}: ${facts.error}`);
  const decision = decideInit(facts, vol.dev, options.forceReinit);
  if (!decision.format) {
    throw volumeError(
      vol,
      `${decision.refusal}; refusing to overwrite it`,
      "pass --force-reinit to destroy its contents and initialise it anyway",
    );
  }
  assertNotInUse(vol);
  log.info(`volume ${vol.volume}: initialising ${vol.dev} (${decision.reason})`);
  // Old signatures go first, so a provider that keeps state in the header (tpm2) starts afresh.
  if (facts.signature !== undefined || facts.subsystem !== undefined)
    await run("wipefs", ["-a", "-q", vol.dev]);

  const provider = await providerFor(vol, configDir, "allowed");
  const key = await provider.getKey();
  try {
    await luks.format(vol.dev, key, formatOptions(vol, luks.SUBSYSTEM_INITIALIZING, provider.temporary));
    await provider.afterFormat?.(vol.dev);
    if (vol.makefs !== undefined && !provider.temporary) await makeFsThroughTemporaryMapping(vol, key);
  } finally {
    key.fill(0);
  }
  await luks.setSubsystem(vol.dev, luks.SUBSYSTEM_READY);
  return provider.temporary
    ? `claimed ${vol.dev} for the otp volume (it is formatted with a fresh key on every open)`
    : `initialised ${vol.dev} (key from ${provider.describe()}${vol.makefs ? `, ${vol.makefs}` : ""})`;
}

export interface OpenOptions {
  /**
   * Mount per `[mount]` (default). The initrd leaves it to cryptpilot-volumes.service: the
   * mount points belong to the real root, which is not there yet.
   */
  mount?: boolean;
}

/**
 * Open the volume as /dev/mapper/<volume> (and mount it per `[mount]`). otp volumes are
 * formatted with a fresh key and makefs every time; persistent ones are opened, never formatted.
 */
export async function openVolume(
  vol: VolumeConfig,
  configDir: string,
  options: OpenOptions = {},
): Promise<string> {
  const device = mapperPath(vol.volume);
  const facts = await probeDevice(vol.volume, vol.dev);
  let done: string;
  if (facts.opened) {
    done = "already open";
  } else {
    if (!facts.devExists) throw volumeError(vol, `${vol.dev} does not exist`);
    if (facts.error !== undefined) throw volumeError(vol, `cannot inspect ${vol.dev}: ${facts.error}`);
    // Opens, never formats a persistent volume (otp formats, but its keys are all fresh anyway).
    const provider = await providerFor(vol, configDir, "never");
    if (provider.temporary) {
      const refusal = otpOpenRefusal(facts, vol.dev);
      if (refusal) throw volumeError(vol, refusal);
      assertNotInUse(vol);
      await openTemporary(vol, provider);
      done = `opened with a fresh ${provider.name} key${vol.makefs ? ` and a new ${vol.makefs}` : ""}`;
    } else {
      const refusal = persistentOpenRefusal(facts, vol.dev);
      if (refusal) throw volumeError(vol, refusal);
      assertNotInUse(vol);
      // A replaced header is refused before any key is fetched; the volume is left as it is.
      const profile = headerProfile(vol);
      const checked = await readCheckedHeader(vol.dev, profile);
      const key = await provider.getKey();
      try {
        await openChecked(vol.dev, vol.volume, key, { profile, keySlot: provider.keySlot?.(), checked });
      } catch (err) {
        const wrongKey = err instanceof CommandError && err.code === 2;
        throw new FdeError(
          wrongKey
            ? `volume ${vol.volume}: the key from ${provider.describe()} does not unlock ${vol.dev} (wrong key); the volume is left as it is`
            : `volume ${vol.volume}: cryptsetup could not open ${vol.dev}`,
          { cause: err },
        );
      } finally {
        key.fill(0);
      }
      done = `opened with the ${provider.name} key`;
    }
  }
  if (vol.mount && options.mount !== false) done += `, ${await mountVolume(device, vol.mount)}`;
  return done;
}

async function openTemporary(vol: VolumeConfig, provider: KeyProvider): Promise<void> {
  const key = await provider.getKey();
  try {
    await luks.format(vol.dev, key, formatOptions(vol, luks.SUBSYSTEM_INITIALIZING, true));
    // Checked although just written: the host can swap the header before this open.
    await openChecked(vol.dev, vol.volume, key, { profile: headerProfile(vol) });
  } finally {
    key.fill(0);
  }
  if (vol.makefs !== undefined) {
    try {
      await makeFs(vol.makefs, mapperPath(vol.volume));
    } catch (err) {
      await luks.close(vol.volume).catch(() => undefined);
      throw err;
    }
  }
  await luks.setSubsystem(vol.dev, luks.SUBSYSTEM_READY);
}

/** Unmount (per `[mount]`) and close; a no-op for a volume that is not open. */
export async function closeVolume(vol: VolumeConfig): Promise<string> {
  const device = mapperPath(vol.volume);
  const facts = await probeDevice(vol.volume, vol.dev);
  if (!facts.opened) return "not open";
  if (vol.mount) await unmountVolume(device, vol.mount);
  await luks.close(vol.volume);
  return "closed";
}
