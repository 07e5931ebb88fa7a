import { after } from 'node:test';

// node:test's `after()` belongs to whichever test or hook is running: called inside a `before` hook it runs as
// soon as that hook ends. Helpers therefore register their cleanups here, run once when the whole file ends.
const tasks: (() => unknown)[] = [];

after(async () => {
  for (const task of tasks.splice(0).reverse()) {
    try {
      await task();
    } catch {
      // One failed cleanup must not skip the others.
    }
  }
});

export function onCleanup(task: () => unknown): void {
  tasks.push(task);
}
