import { quietIpServerNameWarning } from '../../common/tls.js';
import { main } from './cli.js';

quietIpServerNameWarning();
await main(process.argv);
