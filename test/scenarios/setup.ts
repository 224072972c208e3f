import '../../lib/matchers.ts';
