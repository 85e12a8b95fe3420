/**
 * The clock check before the first key fetch. TLS to the KBS and the signed KMS/STS requests fail
 * on a clock that is years off, so:
 *   - NTP servers configured (`[boot] ntp_servers`, `cryptpilot.ntp=` on the kernel command line):
 *     sync from them;
 *   - else the clock is before this binary's build time (certainly wrong): sync from Alibaba
 *     Cloud's NTP service when the ECS metadata service answers (as upstream does), then from
 *     DEFAULT_NTP_SERVERS; if that fails too, set the clock forward to the build time (as
 *     systemd does with its build date), the best lower bound there is;
 *   - else: nothing, no network (a sane clock costs a file read and a comparison).
 * Never a hard failure: a clock that stays wrong shows up as a TLS error that names the clock.
 * The host can still serve a wrong time (it owns the network); this only repairs honest mistakes.
 */
import { printable } from "../escape.ts";
import { log } from "../log.ts";
import { BUILD_TIME_MS } from "./build-time.ts";
import {
  describeServer,
  MAX_NTP_SERVERS,
  NTP_CMDLINE_ARG,
  type NtpServer,
  ntpServersFromCmdline,
  parseNtpServer,
} from "./servers.ts";
import type { SntpTime } from "./sntp.ts";

/** Wall-time budget of all SNTP queries together. */
export const SYNC_BUDGET_MS = 3000;
/** One server's share: name lookup and reply. */
export const PER_SERVER_TIMEOUT_MS = 1000;
/** How long a VM without a metadata service waits for the ECS check. */
export const ECS_PROBE_TIMEOUT_MS = 1000;
/** Differences below this are left alone: not worth a clock step. */
export const MIN_STEP_MS = 1000;
/** Public servers asked (after ECS's, on ECS) when the clock is before the build time and none is configured. */
export const DEFAULT_NTP_SERVERS = ["time.cloudflare.com", "pool.ntp.org"];

export interface ClockDeps {
  /** The wall clock (Date.now). */
  now(): number;
  /** A monotonic clock (performance.now). */
  monotonic(): number;
  /** The kernel command line (/proc/cmdline); "" when unreadable. */
  cmdline(): Promise<string>;
  /** Whether the ECS metadata service answers within `timeoutMs`, and its NTP servers. */
  ecs(timeoutMs: number): Promise<string[] | undefined>;
  query(server: NtpServer, timeoutMs: number): Promise<SntpTime>;
  setClock(unixMs: number): Promise<void>;
  buildTimeMs: number;
}

export type ClockPlan =
  | { sync: false }
  | { sync: true; reason: string; configured: NtpServer[]; beforeBuild: boolean };

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");

/** The servers the config and the command line name (command line first), checked and deduplicated. */
export function configuredServers(fromConfig: readonly string[], cmdline: string): NtpServer[] {
  const out: NtpServer[] = [];
  for (const spec of [...ntpServersFromCmdline(cmdline), ...fromConfig]) {
    const server = parseNtpServer(spec);
    if (!server) {
      log.warn(
        `ignoring NTP server "${printable(spec, 80)}" from ${NTP_CMDLINE_ARG}=: not a host name or address`,
      );
      continue;
    }
    if (!out.some((s) => s.host === server.host && s.port === server.port)) out.push(server);
  }
  if (out.length > MAX_NTP_SERVERS)
    log.warn(`using the first ${MAX_NTP_SERVERS} of ${out.length} NTP servers`);
  return out.slice(0, MAX_NTP_SERVERS);
}

/** Whether to sync, and why: no I/O. */
export function planClockSync(nowMs: number, buildTimeMs: number, configured: NtpServer[]): ClockPlan {
  const beforeBuild = nowMs < buildTimeMs;
  if (configured.length > 0) {
    return { sync: true, reason: "NTP servers are configured", configured, beforeBuild };
  }
  if (beforeBuild) {
    return {
      sync: true,
      reason: `the clock (${iso(nowMs)}) is before this binary's build time (${iso(buildTimeMs)})`,
      configured,
      beforeBuild,
    };
  }
  return { sync: false };
}

export type ClockOutcome =
  | { action: "kept" }
  | { action: "synced"; server: string; stepMs: number }
  | { action: "floored"; why: string }
  | { action: "failed"; why: string };

/** Tries the servers in order within SYNC_BUDGET_MS; the first good answer wins. */
async function firstAnswer(servers: NtpServer[], deps: ClockDeps): Promise<SntpTime | string> {
  const start = deps.monotonic();
  const problems: string[] = [];
  for (const server of servers) {
    const left = SYNC_BUDGET_MS - (deps.monotonic() - start);
    if (left <= 0) {
      problems.push(`no time left for ${describeServer(server)}`);
      break;
    }
    try {
      const t = await deps.query(server, Math.min(PER_SERVER_TIMEOUT_MS, left));
      // A time before the build is as wrong as the clock it would replace.
      if (t.unixMs < deps.buildTimeMs) {
        problems.push(`${t.server}: says ${iso(t.unixMs)}, before this binary's build time`);
        continue;
      }
      return t;
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return problems.join("; ");
}

/** The clock check; never throws. */
export async function syncClock(fromConfig: readonly string[], deps: ClockDeps): Promise<ClockOutcome> {
  try {
    const configured = configuredServers(fromConfig, await deps.cmdline());
    const plan = planClockSync(deps.now(), deps.buildTimeMs, configured);
    if (!plan.sync) {
      log.debug("the clock is after this binary's build time and no NTP server is configured; not syncing");
      return { action: "kept" };
    }
    let servers = plan.configured;
    if (servers.length === 0) {
      const ecs = await deps.ecs(ECS_PROBE_TIMEOUT_MS);
      // On ECS its own service first; the public servers still follow, since anything that
      // accepts a TCP connection on the metadata address (a transparent proxy) looks like ECS.
      servers = [...(ecs ?? []), ...DEFAULT_NTP_SERVERS].map((host) => parseNtpServer(host)!);
      log.info(
        `  ${plan.reason}; syncing from ${ecs ? "Alibaba Cloud's NTP service (ECS)" : "public NTP servers"}`,
      );
    } else {
      log.info(`  ${plan.reason}; syncing from ${servers.map(describeServer).join(", ")}`);
    }
    const answer = await firstAnswer(servers, deps);
    if (typeof answer === "string")
      return await fallBack(plan.beforeBuild, `no NTP server gave a usable time: ${answer}`, deps);
    const target = answer.unixMs + (deps.monotonic() - answer.receivedAt);
    const stepMs = target - deps.now();
    if (Math.abs(stepMs) < MIN_STEP_MS) {
      log.info(`  the clock agrees with ${answer.server} (off by ${Math.round(stepMs)} ms)`);
      return { action: "synced", server: answer.server, stepMs: 0 };
    }
    await deps.setClock(target);
    log.info(
      `  set the clock from ${answer.server} to ${iso(target)} (stepped ${(stepMs / 1000).toFixed(1)} s)`,
    );
    return { action: "synced", server: answer.server, stepMs };
  } catch (e) {
    return { action: "failed", why: warn(`could not set the clock: ${(e as Error).message}`) };
  }
}

async function fallBack(beforeBuild: boolean, why: string, deps: ClockDeps): Promise<ClockOutcome> {
  if (!beforeBuild || deps.now() >= deps.buildTimeMs) return { action: "failed", why: warn(why) };
  await deps.setClock(deps.buildTimeMs);
  return {
    action: "floored",
    why: warn(`${why}; set the clock forward to this binary's build time (${iso(deps.buildTimeMs)})`),
  };
}

function warn(message: string): string {
  log.warn(
    `${message}. TLS certificate checks use this clock; set [boot] ntp_servers in global.toml or ${NTP_CMDLINE_ARG}= if they fail`,
  );
  return message;
}

/** The real dependencies: the system clock, /proc/cmdline, the network, clock_settime. */
export async function realClockDeps(): Promise<ClockDeps> {
  const { readFile } = await import("node:fs/promises");
  return {
    now: Date.now,
    monotonic: () => performance.now(),
    cmdline: () => readFile("/proc/cmdline", "utf8").catch(() => ""),
    ecs: async (timeoutMs) => {
      const { imdsAnswers, ALIYUN_NTP_SERVERS } = await import("../aliyun/imds.ts");
      return (await imdsAnswers(timeoutMs)) ? ALIYUN_NTP_SERVERS : undefined;
    },
    query: async (server, timeoutMs) => (await import("./sntp.ts")).querySntp(server, timeoutMs),
    // Loaded only here: a boot that keeps its clock needs no bun:ffi.
    setClock: async (ms) => (await import("./settime.ts")).setSystemClock(ms),
    buildTimeMs: BUILD_TIME_MS,
  };
}
