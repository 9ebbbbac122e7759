// What a session waits for, folded from its log over REST (for the list and inbox).
import { api } from "./api.js";

class Fold {
  constructor() {
    this.after = 0;
    this.approvals = new Set();
    this.ide = new Set();
    this.questions = new Map();
    this.running = null;
  }

  add(event) {
    switch (event.type) {
      case "turn.started": this.running = event.turn_id; break;
      case "turn.ended":
        if (this.running === event.turn_id) this.running = null;
        // A question cannot outlive its turn (a cancel or timeout sends no question.answered).
        for (const [id, question] of [...this.questions]) {
          if (question.turn_id === event.turn_id) this.questions.delete(id);
        }
        break;
      case "approval.requested": this.approvals.add(event.call_id); break;
      case "approval.resolved": this.approvals.delete(event.call_id); break;
      case "tool.call": this.ide.add(event.call_id); break;
      case "tool.result":
        // The result of a question's call closes it, answered or not (question_id === call_id).
        this.ide.delete(event.call_id);
        this.approvals.delete(event.call_id);
        this.questions.delete(event.call_id);
        break;
      case "question.asked": this.questions.set(event.question_id, event); break;
      case "question.answered": this.questions.delete(event.question_id); break;
      default: break;
    }
  }

  status() {
    if (!this.running) return "idle";
    if (this.approvals.size) return "approval";
    if (this.questions.size) return "question";
    if (this.ide.size) return "ide";
    return "running";
  }
}

const folds = new Map();

/** The fold of *session* (a REST session), caught up with its log when it runs. */
export async function watch(session) {
  let fold = folds.get(session.id);
  if (!fold) {
    fold = new Fold();
    folds.set(session.id, fold);
  }
  if (!session.running_turn && !fold.running) return fold;
  for (let page = 0; page < 50; page++) {
    const result = await api.events(session.id, fold.after, 1000);
    for (const event of result.events) {
      if (event.seq === fold.after + 1) {
        fold.after = event.seq;
        fold.add(event);
      }
    }
    if (!result.has_more) break;
  }
  if (!session.running_turn) {
    fold.running = null;
    fold.questions.clear(); // only a running turn can wait for an answer
  }
  return fold;
}

/** Forget the fold of *sessionId*, a session that is gone. */
export function forget(sessionId) {
  folds.delete(sessionId);
}

export function forgetAll() {
  folds.clear();
}
