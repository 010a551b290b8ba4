import { loadConfig } from './config/config.js';
import { startServer } from './server.js';

await startServer(loadConfig());
