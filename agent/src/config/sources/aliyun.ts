/**
 * Alibaba Cloud ECS user data through the instance metadata service, as upstream reads it
 * (cryptpilot-core vendor/aliyun/cloudinit.rs): an IMDSv2 session token, then
 * GET /latest/user-data with it. Bounded so that a VM without a metadata service (another cloud,
 * a local VM) starts at most IMDS_PROBE_MS later.
 */

import { IMDS_ENDPOINT, Imds, imdsAnswers } from "../../aliyun/imds.ts";
import { ALIYUN_RETRY, type RetryPolicy } from "../../net/retry.ts";
import type { UserDataSource } from "./types.ts";

/**
 * How long the TCP connect to the metadata service may take before the boot goes on without
 * user data (upstream waits 5 s). Inside ECS it answers in milliseconds; this is the whole delay
 * a VM without one pays.
 */
export const IMDS_PROBE_MS = 1000;

/**
 * Once the service has answered the probe: a few quick tries, each exchange within 2 s, all
 * within 6 s, so a metadata service that accepts connections but hangs cannot hold the boot.
 */
export const USER_DATA_RETRY: RetryPolicy = {
  ...ALIYUN_RETRY,
  attempts: 3,
  baseDelayMs: 200,
  maxDelayMs: 1000,
  requestTimeoutMs: 2000,
  totalTimeoutMs: 6000,
};

export interface AliyunUserDataOptions {
  /** The metadata service (tests: the vm-test/aliyun server); default IMDS_ENDPOINT. */
  endpoint?: string;
  probeMs?: number;
  retry?: RetryPolicy;
}

export function aliyunUserData(options: AliyunUserDataOptions = {}): UserDataSource {
  const endpoint = options.endpoint ?? IMDS_ENDPOINT;
  const probeMs = options.probeMs ?? IMDS_PROBE_MS;
  return {
    name: "Alibaba Cloud ECS user data",
    async read() {
      if (!(await imdsAnswers(probeMs, endpoint)))
        return { absent: `no instance metadata service at ${endpoint} (no answer within ${probeMs} ms)` };
      const text = await new Imds(endpoint, options.retry ?? USER_DATA_RETRY).userData();
      return text === undefined ? { absent: `the instance has no user data (${endpoint})` } : { text };
    },
  };
}
