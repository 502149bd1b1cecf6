/** The API's refusal, with its bilingual message. */
export class EnrolmentError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'EnrolmentError';
  }
}
