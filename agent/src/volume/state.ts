/**
 * What a data volume's device holds and what may be done with it. The facts are gathered at the
 * edge (probeDevice); every decision is a pure function of them, so the rules are unit-tested.
 *
 * The three-state initialisation marker is the LUKS2 subsystem label (as upstream and the delta
 * volume): none / "cryptpilot-initializing" (format started, not finished) / "cryptpilot" (done).
 */
import { existsSync } from "node:fs";
import { probeSignature } from "../disk/blkid.ts";
import { readSubsystem, SUBSYSTEM_INITIALIZING, SUBSYSTEM_READY } from "../disk/luks.ts";

export const mapperPath = (volume: string) => `/dev/mapper/${volume}`;

export interface DeviceFacts {
  /** /dev/mapper/<volume> exists. */
  opened: boolean;
  devExists: boolean;
  /** LUKS2 subsystem label: undefined = no LUKS2 header; "" = LUKS2 without a label. */
  subsystem?: string;
  /** What blkid finds ("ext4", "crypto_LUKS", "gpt partition table"), if anything; not probed when subsystem is ours. */
  signature?: string;
  /** Reading the device failed (permissions, not a block device, ...). */
  error?: string;
}

/** Upstream cryptpilot-crypt's status names, kept for `show --json` consumers. */
export type StatusKind =
  | "DeviceNotFound"
  | "CheckFailed"
  | "RequiresInit"
  | "Initializing"
  | "ReadyToOpen"
  | "Opened";

export interface VolumeStatus {
  status: StatusKind;
  description: string;
}

export async function probeDevice(volume: string, dev: string): Promise<DeviceFacts> {
  const facts: DeviceFacts = { opened: existsSync(mapperPath(volume)), devExists: existsSync(dev) };
  if (!facts.devExists) return facts;
  try {
    const subsystem = await readSubsystem(dev);
    if (subsystem !== undefined) facts.subsystem = subsystem;
    // Our marker decides everything on its own (the signature is only read without it), and
    // blkid is a process spawn on every open (~0.1 s in an emulated guest).
    if (subsystem === SUBSYSTEM_READY || subsystem === SUBSYSTEM_INITIALIZING) return facts;
    const signature = await probeSignature(dev);
    if (signature !== undefined) facts.signature = signature;
  } catch (err) {
    facts.error = (err as Error).message;
  }
  return facts;
}

export function volumeStatus(facts: DeviceFacts, dev: string, temporary: boolean): VolumeStatus {
  if (facts.opened) return { status: "Opened", description: "open" };
  if (!facts.devExists) return { status: "DeviceNotFound", description: `${dev} does not exist` };
  if (facts.error !== undefined) {
    return { status: "CheckFailed", description: `cannot inspect ${dev}: ${facts.error}` };
  }
  if (temporary) {
    const refusal = otpOpenRefusal(facts, dev);
    if (refusal) return { status: "RequiresInit", description: refusal };
    return {
      status: "ReadyToOpen",
      description: "temporary (otp): formatted with a fresh key on every open",
    };
  }
  if (facts.subsystem === SUBSYSTEM_READY) {
    return { status: "ReadyToOpen", description: "initialised LUKS2 volume" };
  }
  if (facts.subsystem === SUBSYSTEM_INITIALIZING) {
    return {
      status: "Initializing",
      description: "an initialisation was interrupted; 'volume init' runs it again",
    };
  }
  return {
    status: "RequiresInit",
    description:
      facts.signature === undefined
        ? "blank device; run 'volume init'"
        : `holds data (blkid finds ${facts.signature}); 'volume init' refuses it without --force-reinit`,
  };
}

export type InitDecision = { format: true; reason: string } | { format: false; refusal: string };

/**
 * Whether `volume init` formats the device. An interrupted init is always retried; a finished one
 * or a device holding any signature is only overwritten with --force-reinit.
 */
export function decideInit(facts: DeviceFacts, dev: string, force: boolean): InitDecision {
  if (facts.subsystem === SUBSYSTEM_INITIALIZING) {
    return { format: true, reason: "a previous initialisation was interrupted; starting it again" };
  }
  if (facts.subsystem === SUBSYSTEM_READY) {
    return force
      ? { format: true, reason: "re-initialising (--force-reinit): the old contents are destroyed" }
      : { format: false, refusal: `${dev} is already initialised` };
  }
  if (facts.signature !== undefined) {
    return force
      ? { format: true, reason: `overwriting ${facts.signature} (--force-reinit)` }
      : {
          format: false,
          refusal: `${dev} holds data: blkid finds ${facts.signature} on it`,
        };
  }
  return { format: true, reason: "blank device" };
}

/**
 * An otp volume is re-formatted on every open, so it may only take a device that is blank or
 * already a cryptpilot volume; anything else is refused (a mistyped `dev` must not eat a disk)
 * until `volume init --force-reinit` claims the device. Returns the refusal, or undefined.
 */
export function otpOpenRefusal(facts: DeviceFacts, dev: string): string | undefined {
  if (facts.subsystem === SUBSYSTEM_READY || facts.subsystem === SUBSYSTEM_INITIALIZING) return undefined;
  if (facts.signature === undefined) return undefined;
  return `${dev} holds data (blkid finds ${facts.signature}); an otp volume would overwrite it on every open. Claim the device once with 'volume init --force-reinit'`;
}

/** Why a persistent volume cannot be opened, or undefined when it is initialised. */
export function persistentOpenRefusal(facts: DeviceFacts, dev: string): string | undefined {
  if (facts.subsystem === SUBSYSTEM_READY) return undefined;
  if (facts.subsystem === SUBSYSTEM_INITIALIZING) {
    return `the initialisation of ${dev} was interrupted; run 'volume init' again`;
  }
  return `${dev} is not an initialised cryptpilot volume${facts.signature ? ` (blkid finds ${facts.signature})` : ""}; run 'volume init' first`;
}
