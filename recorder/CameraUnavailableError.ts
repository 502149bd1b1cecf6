import { FAILURE_TEXT, type CaptureFailure } from './CaptureFailure.ts';

/** A camera that cannot be pulled right now, and why (the live API answers per reason). */
export class CameraUnavailableError extends Error {
  constructor(readonly failure: CaptureFailure) {
    super(`${FAILURE_TEXT[failure.reason]}: ${failure.detail}`);
    this.name = 'CameraUnavailableError';
  }
}
