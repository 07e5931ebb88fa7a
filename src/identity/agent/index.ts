export { Agent, type AgentOptions } from './agent.js';
export { SvidKeeper, type Attestation, type HeldSvid, type SvidKeeperOptions } from './svid-keeper.js';
export { writeSvidFiles, SVID_FILE, SVID_KEY_FILE, BUNDLE_FILE } from './svid-files.js';
export { startWorkloadApi, WORKLOAD_API_PROTO, PROTO_LOADER_OPTIONS, type WorkloadSource, type WorkloadState } from './workload-api.js';
