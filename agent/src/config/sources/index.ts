/**
 * Where a boot's FDE configuration comes from (issue #17): select.ts decides (measured user data,
 * else the initrd's), handoff.ts passes the decision to the later stage, one module per cloud
 * reads its user data (aliyun.ts). boot/ imports select.ts and handoff.ts directly and loads a
 * cloud module only when the initrd configures FDE, so a boot stage does not pay for the others.
 */
export { type AliyunUserDataOptions, aliyunUserData, IMDS_PROBE_MS, USER_DATA_RETRY } from "./aliyun.ts";
export { HANDOFF_DIR, HANDOFF_FILE, readHandoff, writeHandoff } from "./handoff.ts";
export { type MeasureBundle, type SelectedConfig, type SelectOptions, selectConfig } from "./select.ts";
export type { UserDataResult, UserDataSource } from "./types.ts";
