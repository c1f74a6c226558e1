pub struct Summary;
