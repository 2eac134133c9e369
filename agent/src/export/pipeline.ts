// The correlator's output side: exchange records -> spans (semconv.ts) -> the span sink.
import type { ExchangeRecord, ExchangeSink } from '../correlate/records.ts';
import { SpanMapper, type SpanMapperOptions } from './semconv.ts';
import type { SpanRecord, SpanSink } from './types.ts';

export class SpanExport implements ExchangeSink {
  private readonly mapper: SpanMapper;
  private readonly sink: SpanSink;
  private readonly out: (s: SpanRecord) => void;

  constructor(sink: SpanSink, o: SpanMapperOptions) {
    this.sink = sink;
    this.mapper = new SpanMapper(o);
    this.out = (s) => this.sink.emit(s);
  }

  emit(r: ExchangeRecord): void {
    this.mapper.map(r, this.out);
  }
}
