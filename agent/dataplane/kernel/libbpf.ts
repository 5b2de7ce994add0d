/**
 * koffi bindings to the system libbpf.so.1 (1.1) and the few libc calls the kernel driver
 * needs. Every call is synchronous on the calling thread except BpfObject.load() (the
 * verifier) and linkUpdateAsync() (an XDP update's RCU wait), which run on a koffi worker
 * thread so that neither stalls the agent's event loop.
 *
 * Struct layouts mirror /usr/include/bpf/{libbpf,bpf}.h of libbpf 1.1.2 and the running
 * kernel's uapi (bpf_link_info.tcx is newer than the 6.1 uapi headers installed here, so it
 * was checked against /sys/kernel/btf/vmlinux); libbpf.test.ts pins the offsets we read.
 */
import koffi from 'koffi';
import { getSystemErrorName } from 'node:util';
import { createLogger } from '../../../common/log.js';

// Loaded once and kept at module scope: unloading a library whose functions are still
// referenced would crash the process.
const libbpf = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

// Kernel uapi values (linux/bpf.h of kernel 6.6+).
export const BPF_PROG_TYPE_UNSPEC = 0;
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_PROG_TYPE_XDP = 6;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_DEVMAP = 14;
export const BPF_MAP_TYPE_DEVMAP_HASH = 25;
export const BPF_F_RDONLY_PROG = 1 << 7;
export const BPF_XDP = 37;
export const BPF_TCX_INGRESS = 46;
export const BPF_TCX_EGRESS = 47;
export const BPF_F_REPLACE = 4;
export const BPF_LINK_TYPE_XDP = 6;
export const BPF_LINK_TYPE_TCX = 11;
const BPF_STATS_RUN_TIME = 0;
const BPF_OBJ_NAME_LEN = 16;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

/** A failed libbpf or libc call; `errno` is positive, `code` its name ("EPERM"). */
export class SysError extends Error {
  override readonly name = 'SysError';
  readonly code: string;
  constructor(readonly op: string, readonly errno: number) {
    super(`${op}: ${describeErrno(errno)}`);
    this.code = errnoName(errno);
  }
}

function errnoName(errno: number): string {
  return errno >= LIBBPF_ERRNO_BASE ? `LIBBPF_ERRNO_${errno}` : getSystemErrorName(-errno);
}

// libbpf's own codes (LIBBPF_ERRNO__FORMAT, ...) start here, and only libbpf can describe them.
const LIBBPF_ERRNO_BASE = 4000;

function describeErrno(errno: number): string {
  const buf = Buffer.alloc(256);
  libbpfStrerror(errno, buf, buf.length);
  const text = buf.toString('utf8', 0, Math.max(0, buf.indexOf(0)));
  return errno >= LIBBPF_ERRNO_BASE ? text : `${text} (${errnoName(errno)})`;
}

/** libbpf ≥ 1.0 int functions return -errno. */
function check(op: string, ret: number): number {
  if (ret < 0) throw new SysError(op, -ret);
  return ret;
}

const libbpfStrerror = libbpf.func('int libbpf_strerror(int err, _Out_ void *buf, size_t size)');
const c = {
  close: libc.func('int close(int fd)'),
  open: libc.func('int open(const char *path, int flags)'),
  setns: libc.func('int setns(int fd, int nstype)'),
  ifNameToIndex: libc.func('unsigned int if_nametoindex(const char *ifname)'),
  ifIndexToName: libc.func('const char *if_indextoname(unsigned int ifindex, _Out_ uint8_t *ifname)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)'),
};

const OpenOpts = koffi.struct('bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  attach_prog_fd_stub: 'uint32_t',
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'void *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32_t',
});

const LinkCreateOpts = koffi.struct('bpf_link_create_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  iter_info: 'void *',
  iter_info_len: 'uint32_t',
  target_btf_id: 'uint32_t',
  // The perf_event / kprobe_multi / tracing union, unused for xdp and tcx links.
  attach_union: koffi.array('uint64_t', 4),
});

const LinkUpdateOpts = koffi.struct('bpf_link_update_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  old_prog_fd: 'uint32_t',
});

const ProgInfo = koffi.struct('bpf_prog_info', {
  type: 'uint32_t',
  id: 'uint32_t',
  tag: koffi.array('uint8_t', 8, 'Typed'),
  // jited_prog_len .. created_by_uid
  reserved1: koffi.array('uint8_t', 36, 'Typed'),
  nr_map_ids: 'uint32_t',
  map_ids: 'uint64_t',
  name: koffi.array('char', BPF_OBJ_NAME_LEN, 'String'),
  // ifindex .. prog_tags
  reserved2: koffi.array('uint8_t', 112, 'Typed'),
  run_time_ns: 'uint64_t',
  run_cnt: 'uint64_t',
});

const MapInfo = koffi.struct('bpf_map_info', {
  type: 'uint32_t',
  id: 'uint32_t',
  key_size: 'uint32_t',
  value_size: 'uint32_t',
  max_entries: 'uint32_t',
  map_flags: 'uint32_t',
  name: koffi.array('char', BPF_OBJ_NAME_LEN, 'String'),
});

const LinkInfo = koffi.struct('bpf_link_info', {
  type: 'uint32_t',
  id: 'uint32_t',
  prog_id: 'uint32_t',
  // The union that follows is 8-byte aligned (some members hold __u64).
  pad: 'uint32_t',
  // xdp: { ifindex }; tcx: { ifindex, attach_type }
  ifindex: 'uint32_t',
  attach_type: 'uint32_t',
});

/** The struct sizes and offsets libbpf.test.ts checks against the C headers. */
export const layouts = { OpenOpts, LinkCreateOpts, LinkUpdateOpts, ProgInfo, MapInfo, LinkInfo };

const api = {
  openMem: libbpf.func('void *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz, const bpf_object_open_opts *opts)'),
  load: libbpf.func('int bpf_object__load(void *obj)'),
  close: libbpf.func('void bpf_object__close(void *obj)'),
  nextProgram: libbpf.func('void *bpf_object__next_program(void *obj, void *prev)'),
  findProgram: libbpf.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
  findMap: libbpf.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
  programName: libbpf.func('const char *bpf_program__name(void *prog)'),
  programFd: libbpf.func('int bpf_program__fd(void *prog)'),
  programType: libbpf.func('int bpf_program__type(void *prog)'),
  programSetType: libbpf.func('int bpf_program__set_type(void *prog, int type)'),
  programSetAutoload: libbpf.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
  mapFd: libbpf.func('int bpf_map__fd(void *map)'),
  mapType: libbpf.func('int bpf_map__type(void *map)'),
  mapKeySize: libbpf.func('uint32_t bpf_map__key_size(void *map)'),
  mapValueSize: libbpf.func('uint32_t bpf_map__value_size(void *map)'),
  mapMaxEntries: libbpf.func('uint32_t bpf_map__max_entries(void *map)'),
  mapFlags: libbpf.func('uint32_t bpf_map__map_flags(void *map)'),
  mapSetPinPath: libbpf.func('int bpf_map__set_pin_path(void *map, const char *path)'),
  mapReuseFd: libbpf.func('int bpf_map__reuse_fd(void *map, int fd)'),
  objPin: libbpf.func('int bpf_obj_pin(int fd, const char *pathname)'),
  objGet: libbpf.func('int bpf_obj_get(const char *pathname)'),
  progInfo: libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ bpf_prog_info *info, _Inout_ uint32_t *info_len)'),
  mapInfo: libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ bpf_map_info *info, _Inout_ uint32_t *info_len)'),
  linkInfo: libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ bpf_link_info *info, _Inout_ uint32_t *info_len)'),
  progFdById: libbpf.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  mapFdById: libbpf.func('int bpf_map_get_fd_by_id(uint32_t id)'),
  linkCreate: libbpf.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const bpf_link_create_opts *opts)'),
  linkUpdate: libbpf.func('int bpf_link_update(int link_fd, int new_prog_fd, const bpf_link_update_opts *opts)'),
  linkDetach: libbpf.func('int bpf_link_detach(int link_fd)'),
  mapLookup: libbpf.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
  mapCreate: libbpf.func('int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, void *opts)'),
  mapUpdate: libbpf.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  mapFreeze: libbpf.func('int bpf_map_freeze(int fd)'),
  progLoad: libbpf.func('int bpf_prog_load(int prog_type, const char *prog_name, const char *license, const void *insns, size_t insn_cnt, void *opts)'),
  enableStats: libbpf.func('int bpf_enable_stats(int type)'),
  numPossibleCpus: libbpf.func('int libbpf_num_possible_cpus(void)'),
};

// libbpf prints why it failed (a bad ELF section, a relocation, a pinned map that does not
// match) through this callback, with a va_list: vsnprintf can take that va_list as the
// pointer both x86-64 and arm64 pass it as. The lines go to the structured log, and the
// recent warnings stay at hand for errors that have no verifier log to show.
const LIBBPF_WARN = 0;
const LIBBPF_INFO = 1;
const PrintFn = koffi.proto('int libbpf_print_fn(int level, void *format, void *args)');
const vsnprintf = libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t size, void *format, void *args)');
const setPrint = libbpf.func('void *libbpf_set_print(libbpf_print_fn *fn)');

const log = createLogger('libbpf');
const RECENT_WARNINGS = 32;
const recentWarnings: Array<{ seq: number; text: string }> = [];
let warningSeq = 0;
const printBuf = Buffer.alloc(2048);
const printer = koffi.register((level: number, format: bigint, args: bigint): number => {
  if (level > LIBBPF_INFO && !log.isLevelEnabled('debug')) return 0;
  const n = vsnprintf(printBuf, printBuf.length, format, args) as number;
  const text = printBuf.toString('utf8', 0, Math.max(0, Math.min(n, printBuf.length - 1))).replace(/^libbpf: /, '').trimEnd();
  if (level === LIBBPF_WARN) {
    log.warn(text);
    recentWarnings.push({ seq: ++warningSeq, text });
    if (recentWarnings.length > RECENT_WARNINGS) recentWarnings.shift();
  } else if (level === LIBBPF_INFO) {
    log.info(text);
  } else {
    log.debug(text);
  }
  return 0;
}, koffi.pointer(PrintFn));
setPrint(printer);

/** A mark for libbpfWarningsSince(). */
export function libbpfWarningMark(): number {
  return warningSeq;
}

/** libbpf's warnings after `mark`, oldest first (the last few dozen at most). */
export function libbpfWarningsSince(mark: number): string[] {
  return recentWarnings.filter((w) => w.seq > mark).map((w) => w.text);
}

// Big enough for the tail of any verifier log worth reading: kernels ≥ 6.4 keep the end of
// an overflowing log, which is where the rejection is explained.
const LOG_SIZE = 4 << 20;

/** A map definition as libbpf parsed it from the object, or as the kernel reports it. */
export interface MapSpec {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** One bpf_program of an open BpfObject; valid until the object is closed. */
export class BpfProgram {
  constructor(private readonly ptr: bigint) {}
  get name(): string {
    return api.programName(this.ptr) as string;
  }
  get type(): number {
    return api.programType(this.ptr) as number;
  }
  setType(type: number): void {
    check('bpf_program__set_type', api.programSetType(this.ptr, type));
  }
  setAutoload(autoload: boolean): void {
    check('bpf_program__set_autoload', api.programSetAutoload(this.ptr, autoload));
  }
  /** Owned by the object: do not close it. */
  get fd(): number {
    return check('bpf_program__fd', api.programFd(this.ptr));
  }
}

/** One bpf_map of an open BpfObject; valid until the object is closed. */
export class BpfMap {
  constructor(private readonly ptr: bigint) {}
  get spec(): MapSpec {
    return {
      type: api.mapType(this.ptr),
      keySize: api.mapKeySize(this.ptr),
      valueSize: api.mapValueSize(this.ptr),
      maxEntries: api.mapMaxEntries(this.ptr),
      flags: api.mapFlags(this.ptr),
    };
  }
  /** At load, libbpf reuses the map pinned here if compatible, or creates and pins it. */
  setPinPath(path: string): void {
    check('bpf_map__set_pin_path', api.mapSetPinPath(this.ptr, path));
  }
  /** At load, libbpf uses the map behind `fd` (it keeps a dup: close yours) and creates none. */
  reuseFd(fd: number): void {
    check('bpf_map__reuse_fd', api.mapReuseFd(this.ptr, fd));
  }
  /** Owned by the object: do not close it. */
  get fd(): number {
    return check('bpf_map__fd', api.mapFd(this.ptr));
  }
}

/**
 * An ELF object opened by libbpf. The object bytes and the verifier log buffer live in
 * native memory owned by this wrapper: libbpf keeps pointers to both until close().
 */
export class BpfObject {
  private closed = false;

  private constructor(
    private readonly ptr: bigint,
    private readonly objBuf: bigint,
    private readonly logBuf: bigint,
  ) {}

  static open(bytes: Uint8Array, objectName: string): BpfObject {
    const objBuf = koffi.alloc('uint8_t', bytes.length) as bigint;
    new Uint8Array(koffi.view(objBuf, bytes.length)).set(bytes);
    const logBuf = koffi.alloc('char', LOG_SIZE) as bigint;
    new Uint8Array(koffi.view(logBuf, 1))[0] = 0;
    const ptr = api.openMem(objBuf, bytes.length, {
      sz: OpenOpts.size,
      object_name: objectName,
      kernel_log_buf: logBuf,
      kernel_log_size: LOG_SIZE,
      // 0: load without a log; libbpf retries a failed load at level 1 into our buffer, so
      // a good program never pays for (or overflows) a log.
      kernel_log_level: 0,
    }) as bigint | null;
    const errno = koffi.errno();
    if (!ptr) {
      koffi.free(objBuf);
      koffi.free(logBuf);
      throw new SysError('bpf_object__open_mem', errno);
    }
    return new BpfObject(ptr, objBuf, logBuf);
  }

  programs(): BpfProgram[] {
    const out: BpfProgram[] = [];
    for (let p = api.nextProgram(this.ptr, null) as bigint | null; p; p = api.nextProgram(this.ptr, p) as bigint | null) {
      out.push(new BpfProgram(p));
    }
    return out;
  }

  program(name: string): BpfProgram | null {
    const p = api.findProgram(this.ptr, name) as bigint | null;
    return p ? new BpfProgram(p) : null;
  }

  map(name: string): BpfMap | null {
    const m = api.findMap(this.ptr, name) as bigint | null;
    return m ? new BpfMap(m) : null;
  }

  /** Creates maps and loads the programs: the verifier runs here. */
  load(): Promise<void> {
    return new Promise((resolve, reject) => {
      api.load.async(this.ptr, (err: unknown, ret: number) => {
        if (err) reject(err);
        else if (ret < 0) reject(new SysError('bpf_object__load', -ret));
        else resolve();
      });
    });
  }

  /** The kernel log of the last failed load attempt ("" if none). */
  log(): string {
    const bytes = new Uint8Array(koffi.view(this.logBuf, LOG_SIZE));
    const end = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, end < 0 ? LOG_SIZE : end)).toString('utf8');
  }

  /** Closes the object's own fds; pinned or linked programs and maps live on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    api.close(this.ptr);
    koffi.free(this.objBuf);
    koffi.free(this.logBuf);
  }
}

export function objPin(fd: number, path: string): void {
  check(`bpf_obj_pin ${path}`, api.objPin(fd, path));
}

/** Opens a pinned object; the caller owns the fd. */
export function objGet(path: string): number {
  return check(`bpf_obj_get ${path}`, api.objGet(path));
}

/** Like objGet, but null when nothing is pinned at `path`. */
export function objGetIfPinned(path: string): number | null {
  try {
    return objGet(path);
  } catch (err) {
    if (err instanceof SysError && err.code === 'ENOENT') return null;
    throw err;
  }
}

/** tcx: place the new program before `relative_fd`'s, or first in the chain when that is 0. */
export const BPF_F_BEFORE = 1 << 3;

/**
 * Attaches `progFd` at `ifindex` (in the calling thread's netns) with link_create `flags`;
 * the caller owns the link fd.
 */
export function linkCreate(progFd: number, ifindex: number, attachType: number, flags = 0): number {
  const opts = { sz: LinkCreateOpts.size, flags, iter_info: null, iter_info_len: 0, target_btf_id: 0, attach_union: [0n, 0n, 0n, 0n] };
  return check('bpf_link_create', api.linkCreate(progFd, ifindex, attachType, opts));
}

/**
 * Atomically replaces the link's program, only if it currently runs `oldProgFd`'s program:
 * the kernel's compare-and-swap (xdp and tcx links answer EPERM when it does not).
 */
export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd: number): void {
  check('bpf_link_update', api.linkUpdate(linkFd, newProgFd, { sz: LinkUpdateOpts.size, flags: BPF_F_REPLACE, old_prog_fd: oldProgFd }));
}

/**
 * linkUpdate on a koffi worker thread. An XDP link update waits for an RCU grace period
 * (10–50 ms under load here); an agent must not stop serving gRPC and telemetry that long.
 */
export function linkUpdateAsync(linkFd: number, newProgFd: number, oldProgFd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    api.linkUpdate.async(linkFd, newProgFd, { sz: LinkUpdateOpts.size, flags: BPF_F_REPLACE, old_prog_fd: oldProgFd }, (err: unknown, ret: number) => {
      if (err) reject(err);
      else if (ret < 0) reject(new SysError('bpf_link_update', -ret));
      else resolve();
    });
  });
}

/**
 * Detaches the link's program now. Dropping the last reference (close, unpin) detaches too,
 * but from a kernel work item, a moment later: long enough for the next attach to find the
 * hook still busy.
 */
export function linkDetach(linkFd: number): void {
  check('bpf_link_detach', api.linkDetach(linkFd));
}

export interface ProgInfo {
  id: number;
  type: number;
  /** Hex of the kernel's 8-byte program tag, as bpftool prints it. */
  tag: string;
  name: string;
  runTimeNs: bigint;
  runCount: bigint;
  mapIds: number[];
}

const MAX_MAP_IDS = 64;
// Reused by every progInfo() call: the kernel writes map ids here, and calls are synchronous.
const mapIdsBuf = koffi.alloc('uint32_t', MAX_MAP_IDS) as bigint;

export function progInfo(fd: number): ProgInfo {
  const info: Record<string, unknown> = { nr_map_ids: MAX_MAP_IDS, map_ids: mapIdsBuf };
  check('bpf_obj_get_info_by_fd (prog)', api.progInfo(fd, info, [ProgInfo.size]));
  const nrMapIds = Math.min(info.nr_map_ids as number, MAX_MAP_IDS);
  return {
    id: info.id as number,
    type: info.type as number,
    tag: Buffer.from(info.tag as Uint8Array).toString('hex'),
    name: info.name as string,
    runTimeNs: BigInt(info.run_time_ns as number | bigint),
    runCount: BigInt(info.run_cnt as number | bigint),
    mapIds: nrMapIds ? Array.from(new Uint32Array(koffi.view(mapIdsBuf, nrMapIds * 4))) : [],
  };
}

export interface MapInfo extends MapSpec {
  id: number;
  /** As the kernel keeps it: at most 15 characters. */
  name: string;
}

export function mapInfo(fd: number): MapInfo {
  const info: Record<string, unknown> = {};
  check('bpf_obj_get_info_by_fd (map)', api.mapInfo(fd, info, [MapInfo.size]));
  return {
    id: info.id as number,
    type: info.type as number,
    keySize: info.key_size as number,
    valueSize: info.value_size as number,
    maxEntries: info.max_entries as number,
    flags: info.map_flags as number,
    name: info.name as string,
  };
}

export interface LinkInfo {
  id: number;
  type: number;
  progId: number;
  /** 0 once the link's device is gone: the link is defunct and runs nothing. */
  ifindex: number;
  /** tcx links only. */
  attachType: number;
}

export function linkInfo(fd: number): LinkInfo {
  const info: Record<string, unknown> = {};
  check('bpf_obj_get_info_by_fd (link)', api.linkInfo(fd, info, [LinkInfo.size]));
  return {
    id: info.id as number,
    type: info.type as number,
    progId: info.prog_id as number,
    ifindex: info.ifindex as number,
    attachType: info.attach_type as number,
  };
}

/** The caller owns the fd. */
export function progFdById(id: number): number {
  return check(`bpf_prog_get_fd_by_id ${id}`, api.progFdById(id));
}

/** The caller owns the fd. */
export function mapFdById(id: number): number {
  return check(`bpf_map_get_fd_by_id ${id}`, api.mapFdById(id));
}

/** The caller owns the fd. */
export function mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number): number {
  return check(`bpf_map_create ${name}`, api.mapCreate(type, name, keySize, valueSize, maxEntries, null));
}

export function mapUpdate(fd: number, key: Uint8Array, value: Uint8Array): void {
  check('bpf_map_update_elem', api.mapUpdate(fd, key, value, 0));
}

/** Makes the map read-only for user space from now on. */
export function mapFreeze(fd: number): void {
  check('bpf_map_freeze', api.mapFreeze(fd));
}

/** Fills `value` (sized by the caller) with the value of `key`. */
export function mapLookup(fd: number, key: Uint8Array, value: Uint8Array): void {
  check('bpf_map_lookup_elem', api.mapLookup(fd, key, value));
}

let possibleCpus: number | undefined;

export function numPossibleCpus(): number {
  possibleCpus ??= check('libbpf_num_possible_cpus', api.numPossibleCpus());
  return possibleCpus;
}

/** One u64 per possible CPU: the value of `key` in a per-CPU array of u64. */
export function lookupPerCpuU64(mapFd: number, key: number): bigint[] {
  // Per-CPU values are laid out round_up(value_size, 8) apart; for a u64 that is 8.
  const value = new BigUint64Array(numPossibleCpus());
  mapLookup(mapFd, u32Key(key), new Uint8Array(value.buffer));
  return Array.from(value);
}

/** A map key of type __u32, in host byte order as the kernel reads it. */
export function u32Key(key: number): Uint8Array {
  return new Uint8Array(new Uint32Array([key]).buffer);
}

/** Turns on run_cnt / run_time_ns accounting for as long as the returned fd stays open. */
export function enableRunTimeStats(): number {
  return check('bpf_enable_stats', api.enableStats(BPF_STATS_RUN_TIME));
}

// r0 = 0; exit
const RETURN_ZERO = Buffer.from([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

// Offset of gso_segs in struct __sk_buff (uapi linux/bpf.h; checked with offsetof).
const SKB_GSO_SEGS = 164;
const TCX_NEXT = -1;

function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(code, 0);
  b.writeUInt8((src << 4) | dst, 1);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}

/**
 * Loads bpfleet's drop witness, a sched_cls program for tcx ingress that adds each packet
 * (max(1, gso_segs): GRO may have merged several wire packets into one skb) to slot 0 of
 * `mapFd`, a per-CPU array of one u64, and returns TCX_NEXT, so the chain goes on as if it
 * were not there. The caller owns the fd.
 */
export function loadWitnessProgram(mapFd: number): number {
  const insns = Buffer.concat([
    insn(0xbf, 6, 1, 0, 0), //              r6 = r1 (ctx)
    insn(0x61, 7, 6, SKB_GSO_SEGS, 0), //   r7 = skb->gso_segs
    insn(0x55, 7, 0, 1, 0), //              if r7 != 0 goto +1
    insn(0xb7, 7, 0, 0, 1), //              r7 = 1
    insn(0x62, 10, 0, -4, 0), //            *(u32 *)(r10 - 4) = 0
    insn(0x18, 1, 1, 0, mapFd), //          r1 = map (BPF_PSEUDO_MAP_FD), ld_imm64 ...
    insn(0x00, 0, 0, 0, 0), //              ... its upper half
    insn(0xbf, 2, 10, 0, 0), //             r2 = r10
    insn(0x07, 2, 0, 0, -4), //             r2 += -4
    insn(0x85, 0, 0, 0, 1), //              call bpf_map_lookup_elem
    insn(0x15, 0, 0, 3, 0), //              if r0 == 0 goto +3
    insn(0x79, 1, 0, 0, 0), //              r1 = *(u64 *)(r0 + 0)
    insn(0x0f, 1, 7, 0, 0), //              r1 += r7
    insn(0x7b, 0, 1, 0, 0), //              *(u64 *)(r0 + 0) = r1
    insn(0xb7, 0, 0, 0, TCX_NEXT), //       r0 = TCX_NEXT
    insn(0x95, 0, 0, 0, 0), //              exit
  ]);
  return check('bpf_prog_load (witness)', api.progLoad(BPF_PROG_TYPE_SCHED_CLS, 'bpfleet_witness', 'GPL', insns, insns.length / 8, null));
}

/** Loads the smallest valid program of `progType`, for feature probes; the caller owns the fd. */
export function loadTrivialProgram(progType: number): number {
  return check('bpf_prog_load', api.progLoad(progType, 'bpfleet_probe', 'GPL', RETURN_ZERO, RETURN_ZERO.length / 8, null));
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** `fn(fd)`, then closes `fd` whatever happens; `fn` must be synchronous. */
export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeFd(fd);
  }
}

/** Resolves an interface name in the calling thread's network namespace. */
export function ifNameToIndex(name: string): number {
  const index = c.ifNameToIndex(name) as number;
  if (index === 0) throw new SysError(`if_nametoindex ${name}`, koffi.errno());
  return index;
}

const IFNAMSIZ = 16;

/** The name of `ifindex` in the calling thread's network namespace; null when there is none. */
export function ifIndexToName(ifindex: number): string | null {
  const buf = Buffer.alloc(IFNAMSIZ);
  if (!c.ifIndexToName(ifindex, buf)) return null;
  return buf.toString('utf8', 0, Math.max(0, buf.indexOf(0)));
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFMTU = 0x8921;

/** The MTU of `name` in the calling thread's network namespace (SIOCGIFMTU on a socket made there). */
export function interfaceMtu(name: string): number {
  const sock = c.socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0) as number;
  if (sock < 0) throw new SysError('socket', koffi.errno());
  try {
    // struct ifreq: ifr_name[IFNAMSIZ], then the union where ifr_mtu is an int.
    const ifreq = Buffer.alloc(40);
    ifreq.write(name.slice(0, IFNAMSIZ - 1), 0, 'utf8');
    if ((c.ioctl(sock, SIOCGIFMTU, ifreq) as number) < 0) throw new SysError(`ioctl SIOCGIFMTU ${name}`, koffi.errno());
    return ifreq.readInt32LE(IFNAMSIZ);
  } finally {
    closeFd(sock);
  }
}

/** Opens a namespace file (/run/netns/x, /proc/thread-self/ns/net) for setns. */
export function openNamespace(path: string): number {
  const fd = c.open(path, O_RDONLY | O_CLOEXEC) as number;
  if (fd < 0) throw new SysError(`open ${path}`, koffi.errno());
  return fd;
}

/** Moves the calling thread (only) into the network namespace behind `fd`. */
export function setNetns(fd: number): void {
  if (c.setns(fd, CLONE_NEWNET) !== 0) throw new SysError('setns', koffi.errno());
}
