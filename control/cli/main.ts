import { quietIpServerNameWarning } from '../../common/ip-server-name-warning.js';
import { main } from './cli.js';

quietIpServerNameWarning();
await main(process.argv);
