import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

// Belt and braces: nothing should log these, and if something does they are censored.
const REDACT = [
  'token', 'client_token', 'password', 'secret', 'key', 'keys', 'keys_base64', 'root_token', 'data',
  '*.token', '*.client_token', '*.password', '*.secret', '*.data', '*.root_token',
  'req.headers["x-vault-token"]', 'req.headers.authorization', 'headers["x-vault-token"]', 'headers.authorization',
];

export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'aegis' }, redact: { paths: REDACT, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
