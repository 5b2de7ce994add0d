/** How the kernel driver reads packet counts from /proc text, as kernel 6.18 writes it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { devCounters, ip6InReceives, ipInReceives } from './counters.js';

const DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 12003116   82347    0    0    0     0          0         0 12003116   82347    0    0    0     0       0          0
  eth0: 9876543    4321    0    7    0     0          0         3  1234567     765    0    0    0     0       0          0
eth0.100:     100       2    0    0    0     0          0         0      200       4    0    0    0     0       0          0
`;

const SNMP = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests
Ip: 2 64 91658 0 0 0 0 0 91658 1631039
Icmp: InMsgs InErrors
Icmp: 5 0
`;

const SNMP6 = `Ip6InReceives                   \t17
Ip6InHdrErrors                  \t0
Ip6InTooBigErrors               \t0
`;

describe('counters from /proc', () => {
  it('/proc/net/dev: rx and tx packets of one interface, by its exact name', () => {
    assert.deepEqual(devCounters(DEV, 'eth0'), { ifaceRxPackets: 4321n, ifaceTxPackets: 765n });
    assert.deepEqual(devCounters(DEV, 'eth0.100'), { ifaceRxPackets: 2n, ifaceTxPackets: 4n });
    assert.deepEqual(devCounters(DEV, 'eth'), {}, 'no interface of that name');
  });

  it('/proc/net/snmp and snmp6: InReceives of IPv4 and IPv6, 0 when absent', () => {
    assert.equal(ipInReceives(SNMP), 91658n);
    assert.equal(ip6InReceives(SNMP6), 17n);
    assert.equal(ipInReceives(''), 0n);
    assert.equal(ip6InReceives(''), 0n);
  });
});
